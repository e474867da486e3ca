"""A ``recstream worker`` child process: started, awaited until ready, stopped cleanly.

Used by ``recstream demo``, the integration tests and the latency benchmark, so
all three run the real worker exactly as a user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from recstream.errors import RecstreamError
from recstream.settings import Settings


def python_cli(*args: str) -> list[str]:
    """``recstream ARGS`` with this interpreter (works without an installed entry point)."""
    return [sys.executable, "-c", "from recstream.cli import main; main()", *args]


def worker_env(
    settings: Settings,
    *,
    app_id: str,
    web_port: int,
    bundle: Path,
    store: str = "memory://",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a worker serving ``settings``' broker and topics."""
    env = {
        **os.environ,
        "RECSTREAM_BOOTSTRAP": settings.bootstrap,
        "RECSTREAM_STATE_DIR": str(settings.state_dir),
        "RECSTREAM_WORKER_APP_ID": app_id,
        "RECSTREAM_WORKER_WEB_PORT": str(web_port),
        "RECSTREAM_WORKER_STORE": store,
        "RECSTREAM_WORKER_BUNDLE": str(bundle),
    }
    for field, name in settings.topics.model_dump().items():
        env[f"RECSTREAM_TOPICS__{field.upper()}"] = name
    for field, value in settings.topic_policy.model_dump().items():
        env[f"RECSTREAM_TOPIC_POLICY__{field.upper()}"] = str(value)
    env.update(extra or {})
    return env


class WorkerProcess:
    """One worker child process with its log file and HTTP port."""

    def __init__(
        self, env: dict[str, str], web_port: int, log_file: Path, args: tuple[str, ...] = ()
    ) -> None:
        self.web_port = web_port
        self.log_file = log_file
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(log_file, "ab")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            python_cli("worker", *args),
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches us; we stop it in order
        )

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def readiness(self) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(self.get("/readyz")[1]))
        return None

    def wait_ready(self, timeout_s: float = 180.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RecstreamError(f"worker exited ({self.proc.returncode}):\n{self.tail_log()}")
            last = self.readiness()
            if last and last.get("ready"):
                return last
            time.sleep(0.3)
        raise RecstreamError(
            f"worker not ready after {timeout_s:.0f} s ({last}):\n{self.tail_log()}"
        )

    def tail_log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (Faust shuts down cleanly, committing offsets), SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode


def exit_on_sigterm() -> None:
    """Make ``kill`` (SIGTERM) unwind like Ctrl-C in this process.

    Python's default SIGTERM action ends the process without running ``finally``
    blocks, so a bench killed that way left its worker and broker running.
    """

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
