"""A minimal HTTP helper for the ``opstatus op`` and ``opstatus demo`` commands.

Deliberately small: it speaks the canonical JSON API (DESIGN.md §4) with httpx and
turns problem+json answers into :class:`ApiError`. The Python SDK can take its place
once it lands; nothing here is public.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

#: seconds a request may take beyond any long-poll wait it asks for
SLACK = 10.0


class ApiError(Exception):
    """The server refused a request, or could not be reached."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def problem_detail(response: httpx.Response) -> str:
    """The one-line reason of an error response (problem+json ``detail``, else the status)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
        if isinstance(detail, str) and detail:
            return detail
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


class Api:
    """A synchronous client of one server with one API key."""

    def __init__(self, url: str, key: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Accept": "application/json"}
        if key:
            headers["X-API-Key"] = key
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str | int | float] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request and return its decoded JSON body; :class:`ApiError` on failure."""
        try:
            response = self._http.request(
                method,
                path,
                json=json_body,
                params=params,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise ApiError(problem_detail(response), response.status_code)
        if not response.content:
            return None
        return response.json()

    def wait_operation(self, op_id: str, version: int | None, wait: float) -> dict[str, Any]:
        """Long-poll one operation until its version differs from ``version`` (or ``wait`` ends)."""
        query: dict[str, str | int | float] = {"wait": wait}
        if version is not None:
            query["version"] = version
        found: dict[str, Any] = self.request(
            "GET", f"/v1/operations/{op_id}", params=query, timeout=wait + SLACK
        )
        return found

    def stream_events(self, op_id: str, after: int = 0) -> Iterator[dict[str, Any]]:
        """Follow an operation's events as Server-Sent Events, backlog first, forever."""
        headers = {"Accept": "text/event-stream"}
        params = {"after": after}
        try:
            with self._http.stream(
                "GET",
                f"/v1/operations/{op_id}/events",
                headers=headers,
                params=params,
                timeout=httpx.Timeout(SLACK, read=None),
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(problem_detail(response), response.status_code)
                data: list[str] = []
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield json.loads("\n".join(data))
                        data = []
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach {self.url}: {exc}") from None
