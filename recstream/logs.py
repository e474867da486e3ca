"""Logging is configured here and nowhere else.

recstream's own packages log at the level asked for; every other library
(faiss's loader, aiokafka, Faust, mode, onnxruntime, ...) at WARNING unless a
higher level is asked, so their INFO chatter (faiss's lines about the CPU
builds it could not load, at every start) never drowns ours. An uncaught
exception, in any thread, is logged as one record with its traceback, not
written to stderr where a framework's redirect would log it one token per line.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType

from rich.console import Console
from rich.logging import RichHandler

# Loggers whose level follows the one asked for (``__main__``: bench/ scripts).
OWN_PACKAGES = ("recstream", "stream", "inference", "training", "tools", "bench", "__main__")

log = logging.getLogger(__name__)


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
    logging.basicConfig(format=fmt, handlers=[handler], force=True)
    set_levels(level)


def set_levels(level: str | int) -> None:
    """recstream's loggers at ``level``, everything else at WARNING (or ``level`` if higher).

    Also called after a framework (Faust's worker) has set up the root logger its
    own way: its handlers then pass whatever a logger lets through.
    """
    number = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    root.setLevel(max(logging.WARNING, number))
    for handler in root.handlers:
        handler.setLevel(logging.NOTSET)
    for name in OWN_PACKAGES:
        logging.getLogger(name).setLevel(number)


def log_uncaught_exceptions(logger: logging.Logger | None = None) -> None:
    """Log exceptions nobody caught, in the main thread or any other, as one record each."""
    target = logger or log

    def in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "?"
        exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
        target.error("uncaught exception in thread %s", name, exc_info=exc_info)

    def in_main(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        target.critical("uncaught exception", exc_info=(exc_type, exc, tb))

    threading.excepthook = in_thread
    sys.excepthook = in_main
