"""One resource, three formats: JSON (default), XML and ``key=value`` properties.

``Accept: application/xml`` or ``?format=xml`` gives XML; ``?format=properties``
gives one ``key=value`` line per leaf, nested keys dotted; a list of objects
renders one line per key with the items' values comma-separated (docs/architecture.md,
Canonical shapes); keys and values are escaped as ``java.util.Properties`` escapes
them (docs/security.md says why).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree as ET

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from opstatus.domain import errors

JSON = "application/json"
XML = "application/xml"
PROPERTIES = "text/plain"
FORMATS = {"json": JSON, "xml": XML, "properties": PROPERTIES}
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
#: what XML 1.0 cannot carry: C0 controls but tab, LF and CR; surrogates; U+FFFE and U+FFFF
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_encoder = msgspec.json.Encoder()


def negotiate(request: Request) -> str:
    """The media type to answer with; Invalid for an unknown ``format``."""
    # no query string, no format: skip parsing one (every request negotiates)
    fmt = request.query_params.get("format") if request.scope.get("query_string") else None
    if fmt is not None:
        media = FORMATS.get(fmt)
        if media is None:
            raise errors.Invalid(f"format must be one of {', '.join(FORMATS)}", parameter="format")
        return media
    accept = request.headers.get("accept", "")
    if "xml" in accept and "json" not in accept:
        return XML
    return JSON


def encode(content: Any, media: str, root: str = "response") -> bytes:
    """Encode a Struct (or plain data) in ``media``."""
    if media == JSON:
        body: bytes = _encoder.encode(content)
        return body
    data = msgspec.to_builtins(content)
    if media == XML:
        return to_xml(data, root)
    return to_properties(data).encode()


def respond(
    request: Request,
    content: Any,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    root: str = "response",
) -> Response:
    """A response in the negotiated format."""
    media = negotiate(request)
    body = encode(content, media, root)
    return Response(body, status_code=status, headers=dict(headers or {}), media_type=media)


def to_xml(data: Any, root: str) -> bytes:
    """Elements named by keys; list items as ``<item>``; odd keys as ``<entry key=…>``."""
    element = ET.Element(root)
    _fill(element, data)
    body: bytes = ET.tostring(element, encoding="utf-8", xml_declaration=True)
    return body


def _fill(element: ET.Element, data: Any) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            name = str(key)
            if _XML_NAME.fullmatch(name) and not name.lower().startswith("xml"):
                child = ET.SubElement(element, name)
            else:
                child = ET.SubElement(element, "entry", key=xml_text(name))
            _fill(child, value)
    elif isinstance(data, list):
        for value in data:
            _fill(ET.SubElement(element, "item"), value)
    elif data is None:
        element.set("nil", "true")
    elif isinstance(data, bool):
        element.text = "true" if data else "false"
    else:
        element.text = xml_text(str(data))


def xml_text(value: str) -> str:
    """``value`` with each character XML cannot carry replaced by U+FFFD (JSON keeps them)."""
    return _NOT_XML.sub("\ufffd", value)


def to_properties(data: Any) -> str:
    """``key=value`` lines; dotted nesting; lists comma-separated per key."""
    lines: dict[str, list[str]] = {}
    _flatten(data, "", lines)
    return "".join(f"{_escape_key(k)}={','.join(v)}\n" for k, v in lines.items())


def _flatten(data: Any, prefix: str, out: dict[str, list[str]]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(data, list):
        key = prefix or "items"
        if not data:
            out.setdefault(key, [])
        for value in data:
            if isinstance(value, dict | list):
                _flatten(value, key, out)
            else:
                out.setdefault(key, []).append(_scalar(value))
    else:
        out.setdefault(prefix, []).append(_scalar(data))


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    # A comma inside a value is escaped so that list items stay apart; ``\,`` reads
    # back as ``,`` under java.util.Properties rules.
    return _escape(str(value), key=False).replace(",", "\\,")


#: what java.util.Properties.store writes for these characters, in keys and values
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}
#: what ends a key or starts a comment when read back: escaped in keys (everywhere,
#: as Java does), so a map key such as ``"y\nstate"`` cannot forge a line of its own
_KEY_SPECIAL = frozenset("=: #!")


def _escape(text: str, *, key: bool) -> str:
    """``text`` as java.util.Properties writes it: backslash escapes for line breaks,
    tab, form feed and backslash; in keys also ``=``, ``:``, space, ``#`` and ``!``; a
    value's leading space; other controls and everything beyond ASCII as ``\\uXXXX``
    (UTF-16 units), so the output is ASCII and a reader decoding it as Latin-1 (as
    ``Properties.load(InputStream)`` does) or UTF-8 gets the same text."""
    out: list[str] = []
    for i, char in enumerate(text):
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char in _KEY_SPECIAL and (key or (char == " " and i == 0)):
            out.append("\\" + char)
        elif code < 0x20 or code > 0x7E:
            out.append(_unicode(code))
        else:
            out.append(char)
    return "".join(out)


def _unicode(code: int) -> str:
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a surrogate pair, as Java's UTF-16 strings hold it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _escape_key(key: str) -> str:
    return _escape(key, key=True)


#: a document with more items than this is encoded off the event loop
LARGE = 500


async def respond_large(request: Request, content: Any, *, size: int, **options: Any) -> Response:
    """:func:`respond` (same ``options``), encoded in a worker thread when ``size`` (items
    in ``content``) passes :data:`LARGE`: rendering a large document as XML or properties
    is Python code that would hold the event loop — and every other request — for its
    whole run."""
    if size <= LARGE:
        return respond(request, content, **options)
    media = negotiate(request)
    body = await asyncio.to_thread(encode, content, media, options.pop("root", "response"))
    return Response(
        body,
        status_code=options.get("status", 200),
        headers=dict(options.get("headers") or {}),
        media_type=media,
    )
