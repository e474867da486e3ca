"""A real Prometheus server for integration tests (Debian's ``prometheus`` binary).

    with PromServer.start(["127.0.0.1:6066"], workdir) as prom:
        prom.wait_until(lambda: prom.query("up") != [])
        prom.query("histogram_quantile(0.99, ...)")

It listens on a free loopback port, scrapes the given targets as job
``recstream-worker`` (the name the alert rules select on), optionally loads
rule files, and is stopped (and its data directory left for inspection) on exit.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from recstream.errors import RecstreamError

log = logging.getLogger(__name__)
T = TypeVar("T")
INSTALL_HINT = (
    "install Debian's prometheus package: apt-get update && apt-get install -y prometheus"
)


class PromServerError(RecstreamError):
    """The test Prometheus could not start, or a query failed."""


@dataclass(frozen=True)
class PromServerConfig:
    job: str = "recstream-worker"
    scrape_interval_s: int = 1  # whole seconds keep Prometheus' duration syntax simple
    evaluation_interval_s: int = 1
    rule_files: tuple[Path, ...] = ()
    start_timeout_s: float = 30.0
    binary: str = "prometheus"
    extra_args: tuple[str, ...] = field(default=())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PromServer:
    """One running Prometheus; use :meth:`start` (or as a context manager)."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, workdir: Path) -> None:
        self.proc = proc
        self.port = port
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    def start(
        cls, targets: Sequence[str], workdir: Path, config: PromServerConfig | None = None
    ) -> PromServer:
        cfg = config or PromServerConfig()
        binary = shutil.which(cfg.binary)
        if binary is None:
            raise PromServerError(f"{cfg.binary!r} not found: {INSTALL_HINT}")
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "prometheus.yml"
        conf.write_text(yaml.safe_dump(cls._config(targets, cfg)))
        port = free_port()
        log_file = workdir / "prometheus.log"
        with log_file.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={conf}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                    *cfg.extra_args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = cls(proc, port, workdir)
        try:
            server._wait_ready(cfg.start_timeout_s)
        except BaseException:
            server.stop()
            raise
        log.info("prometheus ready on %s scraping %s", server.url, list(targets))
        return server

    @staticmethod
    def _config(targets: Sequence[str], cfg: PromServerConfig) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": f"{cfg.scrape_interval_s}s",
                "evaluation_interval": f"{cfg.evaluation_interval_s}s",
            },
            "rule_files": [str(p) for p in cfg.rule_files],
            "scrape_configs": [
                {"job_name": cfg.job, "static_configs": [{"targets": list(targets)}]}
            ],
        }

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PromServerError(
                    f"prometheus exited with {self.proc.returncode}: {self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise PromServerError(f"prometheus not ready after {timeout_s}s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "prometheus.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def _api(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:  # 400/422: a bad query, with Prometheus' reason
            body = json.load(exc)
        if body.get("status") != "success":
            raise PromServerError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns the vector (``[{"metric": {...}, "value": [ts, "v"]}]``)."""
        data = self._api("query", {"query": expr})
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        if data["resultType"] != "vector":
            raise PromServerError(f"{expr!r} gave a {data['resultType']}, not a vector")
        return list(data["result"])

    def value(self, expr: str) -> float:
        """The single value of an instant query that must return exactly one sample."""
        result = self.query(expr)
        if len(result) != 1:
            raise PromServerError(f"{expr!r} returned {len(result)} samples, expected 1: {result}")
        return float(result[0]["value"][1])

    def targets(self) -> list[dict[str, Any]]:
        return list(self._api("targets")["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its health (``ok``, ``err``, ``unknown``)."""
        return [r for g in self._api("rules")["groups"] for r in g["rules"]]

    def wait_until(self, check: Callable[[], T | None], timeout_s: float = 30.0) -> T:
        """Poll ``check`` until it returns something truthy; returns that."""
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                result = check()
                if result:
                    return result
            except PromServerError as exc:
                last_error = exc
            time.sleep(0.2)
        raise PromServerError(f"condition not met after {timeout_s}s (last error: {last_error})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> PromServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
