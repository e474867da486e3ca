"""Logging is configured here and nowhere else."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler


def configure_logging(level: str | int = "INFO", *, rich: bool = True) -> None:
    """Configure the root logger once for a process (CLI entry points call this)."""
    handler: logging.Handler
    if rich:
        # stderr: stdout is for what a command prints (``--json`` documents, tables)
        handler = RichHandler(console=Console(stderr=True), rich_tracebacks=True, show_path=False)
        fmt = "%(name)s: %(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, handlers=[handler], force=True)
    # Third-party chatter that drowns our own lines at INFO.
    for noisy in ("aiokafka", "kafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
