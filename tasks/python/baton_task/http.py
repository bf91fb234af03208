"""Outgoing HTTP(S) requests, through ``wasi:http``, to the servers the task
was granted (``batonctl tasks add --allow-http scheme://host[:port]``).

A server not granted is refused without a connection; a request never
outlasts the tick's deadline, nor this node's turn with the task (it is cut
off, and the tick ends, when the task moves). HTTPS is verified against the
system's roots, or only the CA the task names (``--http-ca``)::

    from baton_task import http

    response = http.get("https://api.example.com/feed")
    if response.status == 200:
        items = response.json()

A request that fails raises ``HttpError``; left uncaught it fails the tick
with its message.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Optional, Tuple

from componentize_py_types import Err
from wit_world.imports import host, outgoing_handler, streams, types

from . import TaskError, fencing_token

DEFAULT_MAX_BODY = 1024 * 1024
"""The cap on a response body ``get`` reads."""


class HttpError(TaskError):
    """A request that did not get a whole response: refused, cut off by
    the tick's deadline or the fence, or a body over its cap."""


@dataclass
class Response:
    """A response: its status, headers (names in lower case, in the order
    received) and whole body."""

    status: int
    headers: List[Tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> Optional[bytes]:
        """The first header called ``name`` (any case)."""
        name = name.lower()
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body read as JSON."""
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise HttpError(f"the response body is not JSON: {e}") from None


def identity_headers() -> List[Tuple[str, bytes]]:
    """Headers that tell a server which run of which task calls it:
    ``baton-task`` (its name), ``baton-node`` (the node running it) and
    ``baton-fencing-token`` (``EPOCH.TICK``, see ``fencing_token``). A
    server that refuses a token lower than the highest it has seen for the
    task refuses a node that lost the task, however late its request
    arrives."""
    token = fencing_token()
    return [
        ("baton-task", host.task_name().encode()),
        ("baton-node", str(host.node_id()).encode()),
        ("baton-fencing-token", f"{token.epoch}.{token.tick}".encode()),
    ]


def get(url: str, headers: Iterable[Tuple[str, bytes]] = ()) -> Response:
    """GETs ``url`` and reads at most ``DEFAULT_MAX_BODY`` bytes of its
    body."""
    return request("GET", url, headers)


def request(
    method: str,
    url: str,
    headers: Iterable[Tuple[str, bytes]] = (),
    body: bytes = b"",
    max_body: int = DEFAULT_MAX_BODY,
) -> Response:
    """Sends ``method url`` with ``headers`` and ``body``, and reads the
    response and at most ``max_body`` bytes of its body (more fails the
    request)."""

    def fail(what: str) -> HttpError:
        return HttpError(f"{method} {url}: {what}")

    scheme, authority, path = _split_url(url)
    entries = [(n, v.encode() if isinstance(v, str) else bytes(v)) for n, v in headers]
    # A body of known length: cut off midway, it cannot look complete.
    if body and not any(n.lower() == "content-length" for n, _ in entries):
        entries.append(("content-length", str(len(body)).encode()))
    try:
        fields = types.Fields.from_list(entries)
    except Err as e:
        raise fail(f"header: {type(e.value).__name__}") from None
    outgoing = types.OutgoingRequest(fields)
    try:
        outgoing.set_method(_method(method))
    except Err:
        raise fail("bad method") from None
    try:
        outgoing.set_scheme(scheme)
        outgoing.set_authority(authority)
        outgoing.set_path_with_query(path)
    except Err:
        raise fail("bad URL") from None
    sending = outgoing.body()
    # Sent first, so that the body's writes flow to the server as they are
    # made rather than fill a buffer no one reads yet.
    try:
        pending = outgoing_handler.handle(outgoing, None)
    except Err as e:
        sending.__exit__(None, None, None)
        raise fail(_describe(e.value)) from None
    with pending:
        if body:
            with sending.write() as stream:
                _write_all(stream, bytes(body), fail)
        try:
            types.OutgoingBody.finish(sending, None)
        except Err as e:
            raise fail(_describe(e.value)) from None
        answer = pending.get()
        while answer is None:
            # Waits through wasi:io/poll, where the node bounds them by the
            # tick's deadline and fence.
            with pending.subscribe() as ready:
                ready.block()
            answer = pending.get()
    if isinstance(answer, Err):
        raise fail("the response was taken twice")
    if isinstance(answer.value, Err):
        raise fail(_describe(answer.value.value))
    with answer.value.value as response:
        status = response.status()
        with response.headers() as received:
            response_headers = [(n.lower(), v) for n, v in received.entries()]
        incoming = response.consume()
        try:
            with incoming.stream() as stream:
                read = _read_all(stream, max_body, fail)
        except BaseException:
            incoming.__exit__(None, None, None)
            raise
        with types.IncomingBody.finish(incoming):
            pass
    return Response(status=status, headers=response_headers, body=bytes(read))


def _read_all(stream: streams.InputStream, max_body: int, fail: Any) -> bytearray:
    """Reads ``stream`` to its end, at most ``max_body`` bytes, waiting
    through wasi:io/poll."""
    read = bytearray()
    while True:
        try:
            chunk = stream.read(64 * 1024)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                return read
            raise fail(f"reading the body: {e.value.value.to_debug_string()}") from None
        if not chunk:
            with stream.subscribe() as ready:
                ready.block()
            continue
        if len(read) + len(chunk) > max_body:
            raise fail(f"the response body is over {max_body} bytes")
        read += chunk


def _write_all(stream: streams.OutputStream, data: Any, fail: Any) -> None:
    """Writes all of ``data`` to ``stream`` and waits until it is flushed,
    waiting through wasi:io/poll."""

    def failed(e: Err) -> HttpError:
        if isinstance(e.value, streams.StreamError_Closed):
            return fail("sending the body: the stream closed")
        return fail(f"sending the body: {e.value.value.to_debug_string()}")

    data = memoryview(data)
    while data:
        try:
            room = stream.check_write()
        except Err as e:
            raise failed(e) from None
        if room == 0:
            with stream.subscribe() as ready:
                ready.block()
            continue
        now = min(room, len(data))
        try:
            stream.write(bytes(data[:now]))
        except Err as e:
            raise failed(e) from None
        data = data[now:]
    # Every byte is written: a stream closed from here on was closed by the
    # sender, done with a body whose Content-Length it has filled (how the
    # request went, the response says).
    try:
        stream.flush()
    except Err as e:
        if isinstance(e.value, streams.StreamError_Closed):
            return
        raise failed(e) from None
    while True:
        with stream.subscribe() as ready:
            ready.block()
        try:
            if stream.check_write() > 0:
                return
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                return
            raise failed(e) from None


_METHODS = {
    "GET": types.Method_Get,
    "HEAD": types.Method_Head,
    "POST": types.Method_Post,
    "PUT": types.Method_Put,
    "DELETE": types.Method_Delete,
    "PATCH": types.Method_Patch,
    "OPTIONS": types.Method_Options,
}


def _method(method: str) -> types.Method:
    known = _METHODS.get(method)
    return known() if known is not None else types.Method_Other(method)


def _describe(e: types.ErrorCode) -> str:
    """A wasi:http error in words."""
    if isinstance(e, types.ErrorCode_HttpRequestDenied):
        return "refused: the task was not granted this server (scheme://host[:port])"
    if isinstance(e, types.ErrorCode_TlsCertificateError):
        return "the server's TLS certificate is not trusted"
    if isinstance(e, types.ErrorCode_ConnectionRefused):
        return "the connection was refused"
    if isinstance(e, types.ErrorCode_ConnectionLimitReached):
        return "refused: too many requests in one tick"
    if isinstance(e, types.ErrorCode_ConnectionTimeout):
        return "no connection before the tick's deadline"
    if isinstance(e, types.ErrorCode_HttpResponseTimeout):
        return "no response before the tick's deadline"
    if isinstance(e, types.ErrorCode_HttpResponseBodySize) and e.value is not None:
        return f"the response body is over {e.value} bytes"
    name = type(e).__name__.removeprefix("ErrorCode_")
    detail = getattr(e, "value", None)
    return name if detail is None else f"{name}: {detail}"


def _split_url(url: str) -> Tuple[types.Scheme, str, str]:
    """``scheme://authority/path?query`` as its parts."""
    if url.startswith("https://"):
        scheme, rest = types.Scheme_Https(), url[len("https://") :]
    elif url.startswith("http://"):
        scheme, rest = types.Scheme_Http(), url[len("http://") :]
    else:
        raise HttpError(f"{url!r}: a URL starts with http:// or https://")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=-1)
    if cut < 0:
        authority, path = rest, "/"
    elif rest[cut] == "?":
        raise HttpError(f"{url!r}: a query follows a path, such as /?q=1")
    else:
        authority, path = rest[:cut], rest[cut:]
    if not authority:
        raise HttpError(f"{url!r}: the host is missing")
    return scheme, authority, path
