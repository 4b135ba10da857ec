"""A bare ASGI hello-world: the ceiling that bench/p1_status_read.py compares against.

No framework, no routing, no I/O: every HTTP request gets the same small JSON
body, so what remains is the server software (uvicorn, uvloop, httptools).
Run: ``uvicorn --app-dir bench hello_asgi:app --loop uvloop --http httptools``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b'{"hello":"world"}'
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every HTTP request with ``BODY``; accept the lifespan protocol."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
