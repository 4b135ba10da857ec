"""Log lines as JSON objects, one per line, for ``opstatus.*`` loggers.

A record's message becomes ``msg``; a ``fields`` mapping passed with
``extra={"fields": {...}}`` is merged into the object (the access log puts the
request id, route, status, … there). ``opstatus serve`` installs this through
:func:`uvicorn_log_config` so every worker process gets it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


def json_line(
    created: float, level: str, logger: str, msg: str, fields: Any = None, exc: str | None = None
) -> str:
    """``{"ts", "level", "logger", "msg", **fields}`` (and ``exc``) encoded on one line."""
    line: dict[str, Any] = {
        "ts": datetime.fromtimestamp(created, UTC),
        "level": level,
        "logger": logger,
        "msg": msg,
    }
    if isinstance(fields, dict):
        line.update(fields)
    if exc:
        line["exc"] = exc
    return _encoder.encode(line).decode()


class JsonFormatter(logging.Formatter):
    """:func:`json_line` of a record; exceptions go in ``exc`` as text."""

    def format(self, record: logging.LogRecord) -> str:
        """Encode one record."""
        exc = self.formatException(record.exc_info) if record.exc_info else None
        fields = getattr(record, "fields", None)
        return json_line(
            record.created, record.levelname.lower(), record.name, record.getMessage(), fields, exc
        )


class TurnHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes the lines logged during one event-loop turn with one
    write, at the end of that turn (a busy server logs an access line per request, and a
    system call per line cost more than the request itself: docs/benchmarks.md).

    A line is never held past the turn it was logged in; warnings and errors, and lines
    logged with no event loop running in the thread (threads, start-up, shutdown), are
    written at once, after any held ones, so the order is kept. ``flush`` (also at
    logging shutdown) writes what is held.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._held: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.hold(line, record.levelno)

    def hold(self, line: str, level: int = logging.INFO) -> None:
        """Write ``line`` (formatted) at the end of this turn, or at once (see the class)."""
        try:
            loop = asyncio.get_running_loop() if level < logging.WARNING else None
        except RuntimeError:
            loop = None
        with self.lock:  # type: ignore[union-attr]
            if loop is not None:
                if not self._held:
                    loop.call_soon(self.flush)
                self._held.append(line)
                return
            self._held.append(line)
        self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            held, self._held = self._held, []
            if held:
                try:
                    self.stream.write("\n".join(held) + self.terminator)
                except Exception:
                    self.handleError(logging.makeLogRecord({"msg": held[0]}))
            super().flush()


def info(logger: logging.Logger, msg: str, fields: dict[str, Any]) -> None:
    """``logger.info(msg)`` with ``fields``, for a line logged on every request: when
    every handler it reaches is a :class:`TurnHandler` with the JSON formatter and no
    filter is in the way (what ``opstatus serve`` configures), the line is encoded and
    handed to them straight, without a LogRecord (a third of the cost). Otherwise, and
    for the caller to check ``logger.isEnabledFor(logging.INFO)`` first, as logging."""
    handlers = _turn_handlers(logger)
    if handlers is None:
        logger.info(msg, extra={"fields": fields})
        return
    if handlers:
        line = json_line(time.time(), "info", logger.name, msg, fields)
        for handler in handlers:
            handler.hold(line)


def _turn_handlers(logger: logging.Logger) -> list[TurnHandler] | None:
    """The handlers an info record of ``logger`` reaches, if a line may go to them
    straight (see :func:`info`); None when it must go through logging."""
    found: list[TurnHandler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if type(handler) is not TurnHandler or handler.filters:
                return None
            if type(handler.formatter) is not JsonFormatter:
                return None
            if handler.level <= logging.INFO:
                found.append(handler)
        current = current.parent if current.propagate else None
    return found


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's own logging config plus JSON lines for ``opstatus.*`` to stderr at ``level``.

    Passed to ``uvicorn.run(log_config=...)``: uvicorn applies it in every
    worker process, which a ``logging`` call in the parent would not reach.
    """
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["opstatus_json"] = {"()": f"{__name__}.JsonFormatter"}
    config["handlers"]["opstatus"] = {
        "class": f"{__name__}.TurnHandler",
        "formatter": "opstatus_json",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["opstatus"] = {
        "handlers": ["opstatus"],
        "level": level.upper(),
        "propagate": False,
    }
    return config
