"""The network, as far as the task was granted it (``--allow-net``)."""

from componentize_py_types import Err
from wit_world.imports import host

from . import TaskError


def exchange(addr: str, request: bytes, max_reply: int) -> bytes:
    """Sends ``request`` over a new TCP connection to ``addr``
    (``HOST:PORT``) and returns the reply (what the peer sends until it
    closes), at most ``max_reply`` bytes. Fails without connecting when
    ``addr`` was not granted or this node no longer owns the task; never
    outlasts the tick's deadline."""
    try:
        return host.tcp_exchange(addr, request, max_reply)
    except Err as e:
        raise TaskError(f"{addr}: {e.value}") from None
