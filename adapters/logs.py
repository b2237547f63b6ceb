"""structlog set-up: logs go to stderr only when asked (``--log-level``).

JSON lines when stderr is not a terminal, readable lines when it is. Without a
level every log call is dropped, so nothing is interleaved with the progress
lines a command prints.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str | None = None, json_logs: bool | None = None) -> None:
    """Send logs at ``level`` and above to stderr; ``None`` drops them all."""
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    threshold = logging.CRITICAL if level is None else getattr(logging, level.upper(), logging.WARNING)
    factory = structlog.ReturnLoggerFactory() if level is None else structlog.PrintLoggerFactory(file=sys.stderr)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
