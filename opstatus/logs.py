"""Log lines as JSON objects, one per line, for ``opstatus.*`` loggers.

A record's message becomes ``msg``; a ``fields`` mapping passed with
``extra={"fields": {...}}`` is merged into the object (the access log puts the
request id, route, status, … there). ``opstatus serve`` installs this through
:func:`uvicorn_log_config` so every worker process gets it.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", **fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Encode one record; exceptions go in ``exc`` as text."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's own logging config plus JSON lines for ``opstatus.*`` to stderr at ``level``.

    Passed to ``uvicorn.run(log_config=...)``: uvicorn applies it in every
    worker process, which a ``logging`` call in the parent would not reach.
    """
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["opstatus_json"] = {"()": f"{__name__}.JsonFormatter"}
    config["handlers"]["opstatus"] = {
        "class": "logging.StreamHandler",
        "formatter": "opstatus_json",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["opstatus"] = {
        "handlers": ["opstatus"],
        "level": level.upper(),
        "propagate": False,
    }
    return config
