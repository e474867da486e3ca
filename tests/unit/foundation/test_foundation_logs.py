"""Logging: recstream's loggers at the level asked for, libraries at WARNING, and an
uncaught exception as one record."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

import pytest

from recstream.logs import configure_logging, log_uncaught_exceptions, set_levels


def test_faiss_loader_lines_stay_quiet_at_info() -> None:
    # What `make demo` showed first on a fresh clone: faiss's loader logs at INFO the
    # CPU builds it could not import, at every start.
    code = (
        "from recstream.logs import configure_logging; configure_logging('INFO', rich=False)\n"
        "import logging, faiss\n"
        "logging.getLogger('tools.demo').info('ours')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "INFO tools.demo: ours" in out.stderr
    assert "faiss" not in out.stderr, out.stderr


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), threading.excepthook, sys.excepthook)
    levels = {n: logging.getLogger(n).level for n in ("stream", "aiokafka", "recstream")}
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    threading.excepthook, sys.excepthook = saved[2], saved[3]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_levels_ours_as_asked_libraries_at_warning(restore_logging) -> None:
    set_levels("DEBUG")
    assert logging.getLogger("stream.app").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("aiokafka.consumer").isEnabledFor(logging.INFO)
    assert logging.getLogger("aiokafka.consumer").isEnabledFor(logging.WARNING)
    set_levels("ERROR")  # a level above WARNING applies to the libraries too
    assert not logging.getLogger("faust.worker").isEnabledFor(logging.WARNING)
    with pytest.raises(ValueError, match="unknown log level"):
        set_levels("LOUD")


def test_an_uncaught_thread_exception_is_one_record(restore_logging) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    configure_logging("INFO", rich=False)
    logging.getLogger().addHandler(Keep())
    log_uncaught_exceptions()

    def boom() -> None:
        raise RuntimeError("fetcher gave up")

    t = threading.Thread(target=boom, name="kafka-thread")
    t.start()
    t.join()
    (record,) = records
    assert record.getMessage() == "uncaught exception in thread kafka-thread"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "fetcher gave up" in logging.Formatter().format(record)
