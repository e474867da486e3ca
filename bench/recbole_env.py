"""RecBole in its own virtual environment (it needs numpy<2 and setuptools<70).

Created once under ``<cache_dir>/recbole-venv`` with ``uv venv`` + ``uv pip install`` and
reused afterwards (a marker file records the exact requirement set). torch from PyPI is the
CUDA build; it runs on the CPU. Nothing from this environment is imported by recstream: the
bench talks to it through ``bench/recbole_runner.py`` run as a subprocess.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REQUIREMENTS = (
    "recbole==1.2.1",
    # Same torch as the training venv, so uv links it from its cache instead of downloading.
    "torch==2.15.0",
    "numpy<2",  # ray/tensorboard in RecBole 1.2.1 use np.bool8, np.float_, np.complex_
    # RecBole imports pkg_resources: NOTES says setuptools<70, but torch 2.15 needs >=77;
    # 77..80 still ship pkg_resources (removed in 81).
    "setuptools>=77,<81",
    "pandas<2.3",
    "scipy<1.14",
)


@dataclass(frozen=True)
class RecBoleEnv:
    root: Path  # the venv directory

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def marker(self) -> Path:
        return self.root / ".recstream-requirements"


def ensure_recbole_env(cache_dir: Path) -> RecBoleEnv:
    """Create (or reuse) the RecBole venv; raise RuntimeError naming the failed step."""
    env = RecBoleEnv(cache_dir / "recbole-venv")
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if env.python.exists() and env.marker.exists() and env.marker.read_text() == wanted:
        return env
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("`uv` is not on PATH: it is needed to build the RecBole venv")
    log.info("creating RecBole venv at %s (one-off, a few minutes)", env.root)
    _run([uv, "venv", "--clear", "--python", sys.executable, str(env.root)])
    _run([uv, "pip", "install", "--python", str(env.python), *REQUIREMENTS])
    _run([str(env.python), "-c", "import recbole, torch, numpy; print(recbole.__version__)"])
    env.marker.write_text(wanted)
    return env


def _run(cmd: list[str]) -> None:
    log.info("$ %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    from recstream.settings import Settings

    print(ensure_recbole_env(Settings().cache_dir).python)
