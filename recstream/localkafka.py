"""A real single-node Apache Kafka (KRaft combined broker/controller) run from Maven jars.

No Docker and no tarball: Maven resolves ``org.apache.kafka:kafka_2.13`` from
the pom in ``deploy/kafka/`` into a cache directory, Kafka's own StorageTool
formats the log directory, and ``kafka.Kafka`` runs detached with its pid,
config, logs and data under ``<home>`` (never inside the repo). Readiness is a
metadata response, not a sleep.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from recstream.errors import ConfigError, KafkaError
from recstream.kafka_admin import wait_for_broker
from recstream.settings import LocalKafkaSettings, Settings

log = logging.getLogger(__name__)

MIN_JAVA = 17


def find_pom() -> Path:
    """The pom that resolves the broker: in the source tree, or packaged in the wheel."""
    repo_pom = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "pom.xml"
    if repo_pom.is_file():
        return repo_pom
    packaged = resources.files("recstream") / "_data" / "kafka-pom.xml"
    if packaged.is_file():
        return Path(str(packaged))
    raise ConfigError("deploy/kafka/pom.xml not found: reinstall recstream")


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ConfigError(f"`{name}` is not on PATH: {hint}")
    return path


def java_executable() -> str:
    """Path to a Java ``MIN_JAVA``+ runtime, or a ConfigError saying how to get one."""
    java = _require_tool(
        "java", f"install a Java {MIN_JAVA}+ runtime (e.g. apt-get install openjdk-17-jre-headless)"
    )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8" style
            major = int(match.group(2))
        if major < MIN_JAVA:
            raise ConfigError(f"Kafka 4.x needs Java {MIN_JAVA}+, found Java {major} at {java}")
    return java


def resolve_jars(version: str, cache_dir: Path, pom: Path | None = None) -> Path:
    """Return a directory holding the broker's jars, resolving them with Maven once."""
    lib = cache_dir / "kafka" / version / "lib"
    marker = lib / ".complete"
    if marker.is_file():
        return lib
    mvn = _require_tool("mvn", "install Apache Maven (e.g. apt-get install maven)")
    tmp = lib.with_name(f"lib.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("resolving Apache Kafka %s with Maven into %s", version, lib)
    cmd = [
        mvn, "-q", "-B", "-f", str(pom or find_pom()), f"-Dkafka.version={version}",
        "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise KafkaError(f"Maven could not resolve org.apache.kafka:kafka_2.13:{version}:\n{tail}")
    bindings = sorted(p.name for p in tmp.glob("*slf4j*impl*.jar"))
    if len(bindings) != 1:
        raise KafkaError(f"expected exactly one SLF4J binding in the broker jars, got {bindings}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    marker.touch()
    return lib


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    home: Path


class LocalKafka:
    """One local broker, identified by its home directory.

    ``start`` is idempotent (a running broker is reused); ``stop`` sends SIGTERM
    for a controlled shutdown and SIGKILLs after ``stop_timeout_s``.
    """

    def __init__(self, config: LocalKafkaSettings, home: Path, cache_dir: Path) -> None:
        self.config = config
        self.home = home
        self.cache_dir = cache_dir
        # Kept so the child is reaped by whoever started it (no zombie, no ResourceWarning).
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalKafka:
        cfg = settings.local_kafka
        return cls(cfg, settings.state_dir / "kafka" / str(cfg.port), settings.cache_dir)

    @property
    def bootstrap(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    @property
    def _pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def _props(self) -> Path:
        return self.home / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "server.log"

    def pid(self) -> int | None:
        """The broker's pid if its process is alive and really is this broker."""
        try:
            pid = int(self._pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self._props).encode() in cmdline else None

    def status(self) -> BrokerStatus:
        return BrokerStatus(self.pid() is not None, self.pid(), self.bootstrap, self.home)

    def start(self) -> BrokerStatus:
        if self.pid() is not None:
            log.info("broker already running at %s (pid %s)", self.bootstrap, self.pid())
            return self.status()
        java = java_executable()
        lib = resolve_jars(self.config.version, self.cache_dir)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        self._write_config()
        classpath = f"{lib}/*"
        if not (self.home / "data" / "meta.properties").is_file():
            self._format(java, classpath)
        jvm = [
            java, f"-Xmx{self.config.heap}", "-Xms128m", "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp", classpath, "kafka.Kafka", str(self._props),
        ]  # fmt: skip
        with open(self.home / "logs" / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                jvm, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the caller's terminal must not kill it
            )  # fmt: skip
        self._proc = proc
        self._pid_file.write_text(str(proc.pid))
        log.info("started Apache Kafka %s (pid %d), waiting for metadata on %s",
                 self.config.version, proc.pid, self.bootstrap)  # fmt: skip
        try:
            asyncio.run(
                wait_for_broker(
                    self.bootstrap,
                    timeout_s=self.config.start_timeout_s,
                    alive=lambda: proc.poll() is None,
                )
            )
        except KafkaError as exc:
            self.stop()
            raise KafkaError(f"{exc}\nlast broker log lines:\n{self.tail_log()}") from exc
        return self.status()

    def stop(self) -> bool:
        """Stop the broker; True if one was running. Leaves no process behind."""
        pid = self.pid()
        if pid is None:
            self._pid_file.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            log.warning(
                "broker pid %d ignored SIGTERM for %.0fs: killing", pid, self.config.stop_timeout_s
            )
            os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        self._pid_file.unlink(missing_ok=True)
        return True

    def tail_log(self, lines: int = 30) -> str:
        for path in (self.log_file, self.home / "logs" / "stdout.log"):
            if path.is_file() and path.stat().st_size:
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log output)"

    def _format(self, java: str, classpath: str) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # "--cluster-id=" form: a base64 id may start with "-" and read as an option.
        cmd = [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
               f"--cluster-id={cluster_id}", f"--config={self._props}"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise KafkaError(f"formatting KRaft storage failed:\n{proc.stdout}{proc.stderr}")

    def _write_config(self) -> None:
        c = self.config
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{c.host}:{c.controller_port}",
            "listeners": f"PLAINTEXT://{c.host}:{c.port},CONTROLLER://{c.host}:{c.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{c.host}:{c.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.home / "data"),
            "num.partitions": "4",
            "auto.create.topics.enable": "true",
            # Single node: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # A dev broker: no 3 s wait before the first consumer group rebalance.
            "group.initial.rebalance.delay.ms": "0",
        }
        self._props.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.home / "log4j2.properties").write_text(
            "status = warn\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {self.log_file}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours is dead for our purposes; reap it.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"
