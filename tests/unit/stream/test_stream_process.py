"""Helpers for worker child processes and the benches that start them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def test_sigterm_runs_finally_blocks(tmp_path: Path) -> None:
    # Without the handler SIGTERM ends Python at once: a bench's `finally` never
    # stops the worker and broker it started.
    marker = tmp_path / "cleaned"
    code = (
        "import os, signal, time\n"
        "from tools.process import exit_on_sigterm\n"
        "exit_on_sigterm()\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "finally:\n"
        f"    open({str(marker)!r}, 'w').write('yes')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=60)
    assert done.returncode == 128 + signal.SIGTERM
    assert marker.read_text() == "yes"
