"""Helpers for common state encodings, the same as the Rust SDK's
``baton_task_sdk::state``: a module in one language can read the other's."""

from . import TaskError


def read_count(state: bytes) -> int:
    """A count kept as decimal text (``b"42"``, which ``batonctl tasks
    list`` shows as a number) or as 8 little-endian bytes (earlier Rust
    counters); an empty state (a new task) is 0."""
    if not state:
        return 0
    if state.isdigit():
        return int(state)
    if len(state) == 8:
        return int.from_bytes(state, "little")
    raise TaskError(f"expected a count as decimal text or 8 bytes, got {len(state)} bytes")


def count(n: int) -> bytes:
    """A count as ``read_count`` reads it: decimal text."""
    return str(n).encode()
