"""{{name}}: a Baton task in Python.

Each tick gets the state the last tick committed (empty for a new task)
and returns the next one. This one counts its ticks and reads an optional
JSON config: ``batonctl tasks add {{name}} --module {{name}} --every 10s
--config '{"greeting": "hello"}'``.
"""

import json

import baton_task
from baton_task import log


class WitWorld(baton_task.Task):
    def tick(self, previous: bytes) -> bytes:
        seen = json.loads(previous) if previous else {"ticks": 0}
        seen["ticks"] += 1
        config = baton_task.config_json() or {}
        log.info(f"{config.get('greeting', 'hello')} from tick {seen['ticks']}")
        return json.dumps(seen).encode()
