"""Structured logging for every service: JSON in production, a readable console in development.

``tenant_id`` and ``call_id`` are bound per asyncio task with :func:`bind_call`, so every line a
call's task writes carries them without passing a logger around (structlog's contextvars).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["bind_call", "configure_logging", "get_logger"]


def configure_logging(service: str, *, json: bool, level: str = "INFO") -> None:
    """Route structlog and the standard library (nats-py, uvicorn) through one renderer."""
    shared_processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
    ]
    renderer: structlog.typing.Processor
    if json:
        renderer = structlog.processors.JSONRenderer()
        shared_processors.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        # The level test first: without it every call below the level still ran the whole chain
        # (context merge, an ISO timestamp...) before the standard library dropped the record.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def _drop_color_message(
    _logger: Any, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """uvicorn adds a pre-coloured copy of its message as an 'extra'; it only adds noise here."""
    event.pop("color_message", None)
    return event


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger.bind(**initial) if initial else logger


def bind_call(*, tenant_id: str | None = None, call_id: str | None = None) -> None:
    """Bind the call's identity to the current task's log context (contextvars are per task)."""
    values = {k: v for k, v in (("tenant_id", tenant_id), ("call_id", call_id)) if v is not None}
    structlog.contextvars.bind_contextvars(**values)
