"""structlog, configured once per process: one canonical line per unit of work, IDs at INFO."""

from __future__ import annotations

import logging
import sys
from typing import Final, Literal

import msgspec
import structlog

# Anything msgspec cannot encode natively (an exception, a Path) is logged as its str().
_json: Final = msgspec.json.Encoder(enc_hook=str)


def _dumps(event: object, **_: object) -> bytes:
    """structlog's JSONRenderer passes json.dumps-style keywords that msgspec does not take."""
    return _json.encode(event)


def configure(level: str = "info", fmt: Literal["auto", "console", "json"] = "auto") -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    if fmt == "json":
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
            cache_logger_on_first_use=True,
        )
        return
    structlog.configure(
        processors=[*shared, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
