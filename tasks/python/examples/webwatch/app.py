"""``webwatch``, in Python: GETs the URL in its JSON config (``{"url":
"https://example.com/feed"}``) every tick and keeps, as JSON, how many
times it polled, the last status, size and a hash of the body, and how many
times the body changed. With ``"post": "TEXT"`` it POSTs the text instead.
Every request names the task, its node and its fencing token in ``baton-*``
headers (``http.identity_headers``). With ``"bearer_secret": "NAME"`` it
also sends the task's secret NAME as ``authorization: Bearer VALUE``
(``batonctl tasks add --secret``). Its state is the Rust ``webwatch``'s,
byte for byte, so either can replace the other without a migration.

The task must be granted the URL's server (scheme, host and port); without
a grant every tick fails, refused. Built against the ``python-task`` world.
"""

import json

import baton_task
from baton_task import TaskError, http, log

FIELDS = ("polls", "changes", "status", "bytes", "hash")


def fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class WitWorld(baton_task.Task):
    def tick(self, previous: bytes) -> bytes:
        config = baton_task.config_json()
        if not isinstance(config, dict) or not isinstance(config.get("url"), str):
            raise TaskError('config must be JSON with a url: {"url": "https://..."}')
        unknown = set(config) - {"url", "post", "bearer_secret"}
        if unknown:
            raise TaskError(f"config has unknown fields: {sorted(unknown)}")
        seen = {"polls": 0, "changes": 0, "status": 0, "bytes": 0, "hash": ""}
        if previous:
            seen.update(json.loads(previous))
        url, post = config["url"], config.get("post")
        headers = http.identity_headers()
        bearer = config.get("bearer_secret")
        if bearer is not None:
            headers.append(("authorization", b"Bearer " + baton_task.secret(bearer)))
        if post is None:
            response = http.request("GET", url, headers)
        else:
            response = http.request("POST", url, headers, post.encode())
        digest = f"{fnv1a(response.body):016x}"
        if digest != seen["hash"]:
            if seen["polls"] > 0:
                log.info(f"{url} changed: {len(response.body)} bytes, status {response.status}")
            seen["changes"] += 1
        seen["polls"] += 1
        seen["status"] = response.status
        seen["bytes"] = len(response.body)
        seen["hash"] = digest
        return json.dumps({k: seen[k] for k in FIELDS}, separators=(",", ":")).encode()
