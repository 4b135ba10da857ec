"""HTTP on the wire for F5-F7: raw requests out, answers in, and what an error says.

:class:`RawConnection` writes whatever bytes it is given (a lying ``Content-Length``,
chunked bodies, Latin-1 headers: what a hostile client sends) and parses the answer
with httptools, as uvicorn parses requests; it costs the load CPU tens of
microseconds a request, so a burst is not capped by its client.

The canonical API answers errors as ``application/problem+json`` (RFC 9457) with a
``detail``; each vendor dialect answers its own documented error body (docs/dialects.md).
:func:`error_message` holds an answer against those shapes: an error must *say* what
was wrong.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from xml.etree import ElementTree as ET

from bench.common import Server

CRLF = b"\r\n"


@dataclasses.dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class _Parsed:
    """httptools callbacks collecting one answer."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.done = False
        self.keep_alive = False
        self.parser: Any = None

    def on_headers_complete(self) -> None:
        # httptools answers should_keep_alive() truly only until the message completes
        self.keep_alive = self.parser.should_keep_alive()

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


def basic(key_id: str, secret: str) -> str:
    """An ``Authorization`` value for HTTP Basic ``key_id:secret``."""
    return "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()


def request_bytes(
    method: str,
    target: str | bytes,
    headers: Iterable[tuple[str | bytes, str | bytes]] = (),
    body: bytes | None = None,
    *,
    content_length: int | None = None,
    chunked: bool = False,
    close: bool = False,
) -> bytes:
    """One HTTP/1.1 request as bytes. ``Content-Length`` is the body's own length unless
    ``content_length`` claims another (a lying client); ``chunked`` sends the body in
    64 KiB chunks without a length."""
    path = target if isinstance(target, bytes) else target.encode()
    lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
    for name, value in headers:
        n = name if isinstance(name, bytes) else name.encode("latin-1")
        v = value if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(n + b": " + v)
    if close:
        lines.append(b"Connection: close")
    payload = body or b""
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
        step = 1 << 16
        pieces = [payload[i : i + step] for i in range(0, len(payload), step)]
        payload = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    elif body is not None or content_length is not None:
        claimed = len(payload) if content_length is None else content_length
        lines.append(b"Content-Length: " + str(claimed).encode())
    return CRLF.join(lines) + CRLF + CRLF + payload


class RawConnection:
    """One HTTP/1.1 connection to ``host:port``: a request out as given, the answer in.

    Reconnects for the next request when the server closed (or was told to close)
    the connection. Raises ConnectionError or TimeoutError when no whole answer came.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def exchange(self, request: bytes, seconds: float = 30.0) -> Reply:
        """Send ``request`` and read its whole answer (within ``seconds``)."""
        import httptools

        async with asyncio.timeout(seconds):
            if self._streams is None:
                self._streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self._streams
            writer.write(request)  # not drained: the server may answer before reading it all
            parsed = _Parsed()
            parser = parsed.parser = httptools.HttpResponseParser(parsed)
            try:
                while not parsed.done:
                    chunk = await reader.read(1 << 16)
                    if not chunk:
                        raise ConnectionError("the server closed the connection without an answer")
                    parser.feed_data(chunk)
            except BaseException:
                await self.close()
                raise
        if not parsed.keep_alive:
            await self.close()
        return Reply(parser.get_status_code(), parsed.headers, bytes(parsed.body))

    async def close(self) -> None:
        """Close the connection (the next exchange opens another)."""
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()
            with contextlib.suppress(OSError):
                await streams[1].wait_closed()


CANONICAL = "canonical"
WEBEX = "webex"
SBC = "sbc"
RSA = "rsa"
CLANFORGE = "clanforge"
COMMANDSTATUS = "commandstatus"
#: uvicorn's own answer to a request it cannot parse as HTTP (never reaches opstatus)
SERVER_400 = b"Invalid HTTP request received."

_RSA_BODY = re.compile(rb"<body>(.*?)(?:Query\s*String=.*)?</body>", re.DOTALL)


def decoded_json(body: bytes) -> Any:
    """The JSON document in ``body``; None when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _canonical(status: int, media: str, body: bytes) -> str | None:
    doc = decoded_json(body)
    if media != "application/problem+json" or not isinstance(doc, dict):
        return None
    if doc.get("status") != status or not _text(doc.get("code")):
        return None
    return _text(doc.get("detail"))


def _webex(status: int, media: str, body: bytes) -> str | None:
    doc = decoded_json(body)
    if not isinstance(doc, dict) or not _text(doc.get("trackingId")):
        return None
    errors = doc.get("errors")
    if not isinstance(errors, list) or not errors:
        return None
    return _text(doc.get("message"))


def _sbc(status: int, media: str, body: bytes) -> str | None:
    if media == "application/json":
        doc = decoded_json(body)
        items = doc.get("messages") if isinstance(doc, dict) else None
        first = items[0] if isinstance(items, list) and items else None
        return _text(first.get("reasonData")) if isinstance(first, dict) else None
    try:
        root = ET.fromstring(body)  # opstatus's own answer; it declares no entities
    except ET.ParseError:
        return None
    if root.tag != "response":
        return None
    return _text(root.findtext("messages/error/reasonData"))


def _rsa(status: int, media: str, body: bytes) -> str | None:
    found = _RSA_BODY.search(body) if media == "text/html" else None
    return _text(found.group(1).decode(errors="replace")) if found else None


def _clanforge(status: int, media: str, body: bytes) -> str | None:
    doc = decoded_json(body)
    if not isinstance(doc, dict) or doc.get("success") is not False:
        return None
    return _text(doc.get("error"))


def _commandstatus(status: int, media: str, body: bytes) -> str | None:
    doc = decoded_json(body)
    if not isinstance(doc, dict) or doc.get("code") != status:
        return None
    content = doc.get("content")
    if not isinstance(content, dict) or not _text(content.get("error")):
        return None
    return _text(doc.get("message"))


_SHAPES: dict[str, Callable[[int, str, bytes], str | None]] = {
    CANONICAL: _canonical,
    WEBEX: _webex,
    SBC: _sbc,
    RSA: _rsa,
    CLANFORGE: _clanforge,
    COMMANDSTATUS: _commandstatus,
}
DIALECTS = tuple(_SHAPES)


def media_type(headers: Mapping[str, str]) -> str:
    """The answer's media type, lower case, without parameters."""
    return headers.get("content-type", "").split(";")[0].strip().lower()


def error_message(
    dialect: str, status: int, headers: Mapping[str, str], body: bytes
) -> tuple[str, str] | None:
    """``(shape, message)`` of an error answer, or None when it carries no message.

    The route's own dialect shape is expected; the canonical problem is accepted
    too when the router answered before any dialect code ran (404 no such path,
    405 no such method), and uvicorn's plain-text 400 when the request was not
    HTTP it could parse.
    """
    media = media_type(headers)
    message = _SHAPES[dialect](status, media, body)
    if message is not None:
        return dialect, message
    if status in (404, 405) and (message := _canonical(status, media, body)) is not None:
        return "router", message
    if status == 400 and body.strip() == SERVER_400:
        return "uvicorn", body.decode()
    return None


def logged_errors(server: Server) -> list[str]:
    """The server's error log lines (unhandled exceptions) in a few words; empty if none."""
    lines = server.log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if '"level":"error"' in line]
    if not errors:
        return []
    return [f"the server logged {len(errors)} errors; the first: {errors[0][:400]}"]
