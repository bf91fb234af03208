"""Write a Baton task in Python.

A task module is a class called ``WitWorld`` in a module called ``app``,
built into a WebAssembly component by componentize-py::

    import baton_task
    from baton_task import state


    class WitWorld(baton_task.Task):
        def tick(self, previous: bytes) -> bytes:
            return state.count(state.read_count(previous) + 1)

``tick`` gets the task's last committed state (empty for a new task) and
returns the next one: bytes, or an ``Outcome`` to also say when the next
tick runs. An exception fails the tick (the state stays as it was and the
tick is retried); its message is the task's last error in ``batonctl tasks
show``. Raise ``TaskError`` for a failure that needs no traceback.

A task whose state format differs from its other versions' also defines
``migrate(from_version, to_version, state) -> bytes`` and
``can_downgrade(from_version, to_version) -> bool``, and is built against
the ``python-migrating-task`` world (Erlang's ``code_change``: see
``wit/task.wit``).

Build one (``docs/python.md``)::

    componentize-py -d tasks/python/wit -w python-task componentize \\
        -p tasks/python -p DIR_OF_APP app -o task.wasm

Import everything at the top of a module: the build runs the module's
top-level code once and keeps what it made, and a module imported later,
during a tick, may not be found.
"""

import functools
import json
import traceback
from typing import Any, Callable

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports import secrets as _secrets

__all__ = [
    "Outcome",
    "Task",
    "TaskError",
    "config",
    "config_json",
    "fencing_token",
    "name",
    "node_id",
    "now_ms",
    "secret",
    "secret_text",
]

Outcome = wit_world.Outcome
"""What a tick returns when it also sets the time of the next one:
``Outcome(state=b"...", next_in_ms=5000)`` (``None``: the schedule's)."""

FencingToken = host.FencingToken


class TaskError(Exception):
    """A failed tick or migration whose message says it all: it becomes
    the task's last error as it is, without the exception's type or where
    it was raised."""


def name() -> str:
    """The task's name."""
    return host.task_name()


def config() -> bytes:
    """The task's config, as given to ``batonctl tasks add --config``."""
    return host.task_config()


def config_json() -> Any:
    """The task's config read as JSON (``None`` when it has none)."""
    raw = host.task_config()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as e:
        raise TaskError(f"the task's config is not JSON: {e}") from None


def fencing_token() -> host.FencingToken:
    """This tick's fencing token: ``epoch`` rises every time the task
    changes owner, ``tick`` is the number this tick will commit as.
    Compared as a pair they only ever go up for one task: send them with
    every request that changes something downstream, and have the
    downstream refuse a token lower than the highest it has seen, so that
    a node that lost the task is refused however late its request
    arrives."""
    return host.token()


def node_id() -> int:
    """The id of the node running this tick."""
    return host.node_id()


def now_ms() -> int:
    """Milliseconds since the Unix epoch, by the node's clock."""
    return host.now_ms()


def secret(name: str) -> bytes:
    """The value of the task's secret ``name`` (``batonctl tasks add
    --secret NAME=...``), opened by the node running the tick. Raises
    ``TaskError`` saying why when the task has no secret of that name or
    this node cannot open it. Keep a value out of the task's state and
    logs: Baton never shows it, and cannot stop the task from showing it."""
    try:
        return _secrets.get(name)
    except Err as e:
        raise TaskError(str(e.value)) from None


def secret_text(name: str) -> str:
    """``secret(name)`` as UTF-8 text."""
    value = secret(name)
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise TaskError(f"secret {name} is not UTF-8 text") from None


def _failure(e: BaseException, during: str) -> Err:
    """An exception as the error a tick or migration returns."""
    if isinstance(e, TaskError):
        return Err(str(e))
    if isinstance(e, Err):
        # An error of a host call (its payload no string), left uncaught.
        return Err(f"{during} raised Err({e.value!r})")
    where = ""
    frames = traceback.extract_tb(e.__traceback__)
    if frames:
        last = frames[-1]
        where = f" ({last.filename} line {last.lineno}, in {last.name})"
    return Err(f"{during} raised {type(e).__name__}: {e}{where}")


def _tick(method: Callable[..., Any]) -> Callable[..., Outcome]:
    @functools.wraps(method)
    def tick(self: Any, previous: bytes) -> Outcome:
        try:
            result = method(self, previous)
        except Err as e:
            if isinstance(e.value, str):
                raise
            raise _failure(e, "tick") from None
        except Exception as e:
            raise _failure(e, "tick") from None
        if isinstance(result, (bytes, bytearray)):
            return Outcome(state=bytes(result), next_in_ms=None)
        if isinstance(result, Outcome):
            return result
        raise Err(f"tick returned {type(result).__name__}; a tick returns bytes or baton_task.Outcome")

    return tick


def _migrate(method: Callable[..., Any]) -> Callable[..., bytes]:
    @functools.wraps(method)
    def migrate(self: Any, from_version: int, to_version: int, state: bytes) -> bytes:
        try:
            result = method(self, from_version, to_version, state)
        except Err as e:
            if isinstance(e.value, str):
                raise
            raise _failure(e, f"migrate from {from_version} to {to_version}") from None
        except Exception as e:
            raise _failure(e, f"migrate from {from_version} to {to_version}") from None
        if not isinstance(result, (bytes, bytearray)):
            raise Err(f"migrate returned {type(result).__name__}; it returns bytes")
        return bytes(result)

    return migrate


def _can_downgrade(method: Callable[..., Any]) -> Callable[..., bool]:
    @functools.wraps(method)
    def can_downgrade(self: Any, from_version: int, to_version: int) -> bool:
        try:
            return bool(method(self, from_version, to_version))
        except Exception as e:
            # No error can be returned here: an exception is a "no", said
            # in the node's log.
            host.log(host.Level.ERROR, _failure(e, "can_downgrade").value)
            return False

    return can_downgrade


class Task:
    """The base of a task's ``WitWorld``: an exception in ``tick`` or
    ``migrate`` becomes a failed tick with its message (rather than a trap
    whose traceback no one sees), and ``tick`` may return plain bytes."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        wrappers = {"tick": _tick, "migrate": _migrate, "can_downgrade": _can_downgrade}
        for attribute, wrap in wrappers.items():
            method = cls.__dict__.get(attribute)
            if method is not None:
                setattr(cls, attribute, wrap(method))
        # Checked when the build imports the module, so that a task
        # without a tick is not built at all.
        if not callable(getattr(cls, "tick", None)):
            raise TypeError(f"{cls.__name__} defines no tick(self, previous: bytes)")

