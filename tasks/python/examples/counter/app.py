"""``counter``, in Python: counts its ticks, as the Rust ``counter`` does,
but keeps the count as JSON (``{"count": 7}``). It converts states both
ways (``migrate``, Erlang's ``code_change``): up from the Rust counters'
formats (decimal text, 8 little-endian bytes, or ``counter-v2:N``) when a
task switches to it, and back down to decimal text when a rollback returns
a task to a Rust version. It tells the formats apart by their bytes, so it
does not depend on which release numbers the cluster gave the versions.

Built against the ``python-migrating-task`` world.
"""

import json

import baton_task
from baton_task import TaskError, state

V2_PREFIX = b"counter-v2:"


def count(previous: bytes) -> int:
    """The count in a state of any counter's format (empty: a new task, 0)."""
    if previous.startswith(b"{"):
        try:
            return int(json.loads(previous)["count"])
        except (ValueError, KeyError, TypeError) as e:
            raise TaskError(f"bad counter state {previous[:64]!r}: {e}") from None
    if previous.startswith(V2_PREFIX):
        return int(previous[len(V2_PREFIX) :])
    return state.read_count(previous)


def encode(n: int) -> bytes:
    return json.dumps({"count": n}, separators=(",", ":")).encode()


class WitWorld(baton_task.Task):
    def tick(self, previous: bytes) -> bytes:
        return encode(count(previous) + 1)

    def migrate(self, from_version: int, to_version: int, previous: bytes) -> bytes:
        n = count(previous)
        # Down: back to the Rust counter's decimal text, which every
        # version of it reads.
        return state.count(n) if to_version < from_version else encode(n)

    def can_downgrade(self, from_version: int, to_version: int) -> bool:
        return True
