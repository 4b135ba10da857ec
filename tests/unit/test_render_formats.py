"""``?format=properties`` and XML from hostile keys and values.

The properties output is read back with a small parser that follows the rules of
``java.util.Properties.load`` (written here, independent of the renderer): every
key and value must come back exactly, and no key or value may forge a line.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from opstatus.web import render

_UNESCAPE = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_WHITESPACE = " \t\f"


def logical_lines(text: str) -> list[str]:
    """Natural lines joined where a line ends in an odd number of backslashes;
    comment and blank lines dropped; each continuation's leading whitespace skipped."""
    out: list[str] = []
    pending = ""
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.lstrip(_WHITESPACE)
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def unescape(text: str) -> str:
    """Backslash escapes as Properties.load reads them (``\\uXXXX``, ``\\t`` …; any
    other escaped character stands for itself)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        else:
            out.append(_UNESCAPE.get(nxt, nxt))
            i += 2
    # \\uXXXX pairs were read as UTF-16 units, as Java's strings hold them
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")


def split(line: str) -> tuple[str, str]:
    """Key and value of a logical line: the key ends at the first unescaped ``=``,
    ``:`` or whitespace; then whitespace, at most one ``=``/``:``, whitespace."""
    i = 0
    while i < len(line) and line[i] not in "=:" + _WHITESPACE:
        i += 2 if line[i] == "\\" else 1
    key, rest = line[:i], line[i:]
    rest = rest.lstrip(_WHITESPACE)
    if rest[:1] in ("=", ":"):
        rest = rest[1:]
    return unescape(key), unescape(rest.lstrip(_WHITESPACE))


def load(text: str) -> dict[str, str]:
    """``text`` as java.util.Properties loads it (later lines win)."""
    return dict(split(line) for line in logical_lines(text))


hostile = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("=:#! \t\n\r\f\\,.\u00e9\u2028\U0001f600\x00\x7f")),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(hostile, hostile, max_size=6))
def test_properties_round_trip_hostile_keys_and_values(data: dict[str, str]) -> None:
    text = render.to_properties(data)
    assert text.isascii()
    assert load(text) == data
    assert len(logical_lines(text)) == len(data)  # one line per key, none forged


def test_a_key_cannot_forge_another_line() -> None:
    """The finding: a result key ``"y\\nstate"`` on a failed execution read as state."""
    data: dict[str, Any] = {"state": "failed", "result": {"y\nstate": "succeeded"}}
    loaded = load(render.to_properties(data))
    assert loaded["state"] == "failed"
    assert loaded["result.y\nstate"] == "succeeded"
    for key in ("a\rstate", "#state", "!x", "a=b", "a:b", "a b"):
        assert load(render.to_properties({key: "v"})) == {key: "v"}


def test_list_values_stay_comma_separated() -> None:
    text = render.to_properties({"items": [{"id": "a,b"}, {"id": "c"}]})
    assert text == "items.id=a\\,b,c\n"


def test_the_parser_reads_java_forms() -> None:
    """The test's parser against text as Java writes it, so it cannot agree with the
    renderer by sharing a mistake."""
    java = "# comment\n! other\nkey\\ one = v\\u00e9\\n\nk2:\\ lead\nk3 tail\\\n   more\n"
    assert load(java) == {"key one": "v\u00e9\n", "k2": " lead", "k3": "tailmore"}


@given(st.dictionaries(hostile, hostile, max_size=6))
def test_xml_keeps_every_key(data: dict[str, str]) -> None:
    """Element names come only from keys that are safe XML names; any other key is an
    ``entry`` attribute, so a key can add no element or attribute of its own."""
    root = ET.fromstring(render.to_xml(data, "r"))
    assert len(root) == len(data)
    for child, (key, value) in zip(root, data.items(), strict=True):
        if child.tag == "entry":
            assert child.attrib == {"key": render.xml_text(key)}
        else:
            assert child.tag == key and not child.attrib
        # XML parsers read a raw CR as LF: the text is kept, its line ends normalised
        assert (child.text or "") == _lines(render.xml_text(value))


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def test_with_headers_appends_new_names_and_replaces_ones_already_there() -> None:
    from starlette.responses import Response

    from opstatus.web.endpoint import with_headers

    pairs = [(b"ratelimit-limit", b"10"), (b"ratelimit-remaining", b"9")]
    fresh = Response(b"{}", media_type="application/json")
    with_headers(fresh, pairs)
    assert fresh.raw_headers[-2:] == pairs
    assert fresh.headers["RateLimit-Remaining"] == "9"
    carrying = Response(b"{}", headers={"RateLimit-Remaining": "old"})
    with_headers(carrying, pairs)
    assert carrying.headers.getlist("ratelimit-remaining") == ["9"]
    assert carrying.headers["ratelimit-limit"] == "10"
    untouched = Response(b"{}")
    before = list(untouched.raw_headers)
    with_headers(untouched, [])
    assert untouched.raw_headers == before
