"""Lines the operator must see, whatever logging the server set up."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("otel_llm_metrics")


def announce(message: str) -> None:
    """Say something the operator must see (where metrics are served, what we turned off).

    Servers configure their own loggers only (uvicorn.*, gunicorn.*), so an INFO line on ours would
    be dropped: it goes to our logger when someone configured it, else straight to stderr.
    """
    if logger.hasHandlers() and logger.isEnabledFor(logging.INFO):
        logger.info(message)
    else:
        print(f"INFO:     {message}", file=sys.stderr, flush=True)
