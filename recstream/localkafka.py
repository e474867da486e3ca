"""A real single-node Apache Kafka (KRaft combined broker/controller) run from Maven jars.

No Docker and no tarball: Maven resolves ``org.apache.kafka:kafka_2.13`` from
the pom in ``deploy/kafka/`` into a cache directory, Kafka's own StorageTool
formats the log directory, and ``kafka.Kafka`` runs detached with its pid,
config, logs and data under ``<home>`` (never inside the repo). Readiness is a
metadata response, not a sleep.

Two extensions serve the reliability tests (which build clusters and TLS material
in ``tests/integration/reliability/``) and secured development setups:

- :class:`NodeRole`: the node's place in a multi-node cluster (id, quorum voters,
  shared cluster id, replication).
- :class:`ScramTls`: the client listener speaks SASL_SSL with SCRAM-SHA-512
  (credentials written by ``StorageTool format --add-scram``, TLS material
  given as :class:`TlsMaterial`). The controller listener stays PLAINTEXT on
  loopback; brokers talk to each other over the SASL_SSL listener.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pydantic import SecretStr

from recstream.errors import ConfigError, KafkaError
from recstream.kafka_admin import wait_for_broker
from recstream.settings import KafkaSecurity, LocalKafkaSettings, Settings

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


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass(frozen=True)
class NodeRole:
    """Where one node sits in a cluster (defaults: a lone node, everything replicated once)."""

    node_id: int = 1
    voters: str | None = None  # controller.quorum.voters; None: this node alone
    cluster_id: str | None = None  # shared by every node of a cluster; None: a fresh one
    replication: int = 1  # internal topics and default.replication.factor
    min_isr: int = 1  # min.insync.replicas (broker default and internal topics)


@dataclass(frozen=True)
class TlsMaterial:
    """A broker's TLS files (PKCS12 stores) and the CA for its clients."""

    keystore: Path  # PKCS12: broker key + chain
    truststore: Path  # PKCS12: the CA
    store_password: str  # for both stores; lives in server.properties only
    ca_pem: Path  # the CA certificate for clients


@dataclass(frozen=True)
class ScramTls:
    """Serve clients over SASL_SSL + SCRAM-SHA-512 only.

    ``users`` are the SCRAM credentials created when the storage is formatted
    (changing them later needs the admin API, not a restart). ``broker_user``
    is the one the brokers use among themselves and for readiness checks.
    """

    tls: TlsMaterial
    users: Mapping[str, SecretStr] = field(default_factory=dict)
    broker_user: str = "broker"
    mechanism: str = "SCRAM-SHA-512"

    def client_security(self, user: str, password: SecretStr | None = None) -> KafkaSecurity:
        """Client settings for ``user`` (its real password unless one is given)."""
        return KafkaSecurity(
            protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            username=user,
            password=password if password is not None else self.users[user],
            ssl_cafile=self.tls.ca_pem,
        )


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

    def __init__(
        self,
        config: LocalKafkaSettings,
        home: Path,
        cache_dir: Path,
        *,
        role: NodeRole | None = None,
        scram_tls: ScramTls | None = None,
    ) -> None:
        self.config = config
        self.home = home
        self.cache_dir = cache_dir
        self.role = role or NodeRole()
        self.scram_tls = scram_tls
        if scram_tls is not None and scram_tls.broker_user not in scram_tls.users:
            raise ConfigError(f"SCRAM user {scram_tls.broker_user!r} (broker_user) has no password")
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

    def running(self) -> bool:
        """Alive, judged by our child handle when we started it: right after spawning,
        /proc's cmdline may not show the config path yet (the java launcher re-execs)."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid() is not None

    def status(self) -> BrokerStatus:
        return BrokerStatus(self.pid() is not None, self.pid(), self.bootstrap, self.home)

    @property
    def security(self) -> KafkaSecurity:
        """What a client needs to reach this broker as its broker user."""
        if self.scram_tls is None:
            return KafkaSecurity()
        return self.scram_tls.client_security(self.scram_tls.broker_user)

    def start(self) -> BrokerStatus:
        """Start (or reuse) the broker and wait until it answers metadata requests."""
        proc = self.launch()
        if proc is None:
            log.info("broker already running at %s (pid %s)", self.bootstrap, self.pid())
            return self.status()
        self.wait_ready(alive=lambda: proc.poll() is None)
        return self.status()

    def wait_ready(self, alive: Callable[[], bool] | None = None) -> None:
        try:
            asyncio.run(
                wait_for_broker(
                    self.bootstrap,
                    timeout_s=self.config.start_timeout_s,
                    security=self.security,
                    alive=alive,
                )
            )
        except KafkaError as exc:
            self.stop()
            raise KafkaError(f"{exc}\nlast broker log lines:\n{self.tail_log()}") from exc

    def launch(self) -> subprocess.Popen[bytes] | None:
        """Format the storage if needed and spawn the JVM; None if it already runs.

        Does not wait: a cluster launches every node before any can elect a leader.
        """
        if self.pid() is not None:
            return None
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
        log.info("started Apache Kafka %s node %d (pid %d) on %s", self.config.version,
                 self.role.node_id, proc.pid, self.bootstrap)  # fmt: skip
        return proc

    def kill(self) -> bool:
        """SIGKILL the broker (a crash: no controlled shutdown, no flush); True if it ran."""
        pid = self.pid()
        if pid is None:
            return False
        _sigkill(pid)
        self._forget()
        log.info("killed broker node %d (pid %d)", self.role.node_id, pid)
        return True

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
            _sigkill(pid)
        self._forget()
        return True

    def _forget(self) -> None:
        """Reap our child (if we started it) and drop the pid file of a dead broker."""
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        self._pid_file.unlink(missing_ok=True)

    def tail_log(self, lines: int = 30) -> str:
        for path in (self.log_file, self.home / "logs" / "stdout.log"):
            if path.is_file() and path.stat().st_size:
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log output)"

    def _format(self, java: str, classpath: str) -> None:
        cluster_id = self.role.cluster_id or new_cluster_id()
        # "--cluster-id=" form: a base64 id may start with "-" and read as an option.
        cmd = [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
               f"--cluster-id={cluster_id}", f"--config={self._props}"]  # fmt: skip
        secrets: list[str] = []
        if self.scram_tls is not None:
            for user, password in self.scram_tls.users.items():
                secret = password.get_secret_value()
                secrets.append(secret)
                cmd.append(
                    f"--add-scram={self.scram_tls.mechanism}=[name={user},password={secret}]"
                )
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            out = proc.stdout + proc.stderr
            for secret in secrets:  # never echo a password into an exception or a log
                out = out.replace(secret, "***")
            raise KafkaError(f"formatting KRaft storage failed:\n{out}")

    def _write_config(self) -> None:
        c, r = self.config, self.role
        listener = "PLAINTEXT" if self.scram_tls is None else "SASL_SSL"
        rf, isr = str(r.replication), str(r.min_isr)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(r.node_id),
            "controller.quorum.voters": r.voters or f"{r.node_id}@{c.host}:{c.controller_port}",
            "listeners": f"{listener}://{c.host}:{c.port},CONTROLLER://{c.host}:{c.controller_port}",
            "advertised.listeners": f"{listener}://{c.host}:{c.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{listener}:{listener}",
            "log.dirs": str(self.home / "data"),
            "num.partitions": "4",
            "auto.create.topics.enable": "true",
            # Internal topics replicated as the cluster allows (1 on a single node).
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            # Never elect an out-of-sync replica: that would silently drop acked writes.
            "unclean.leader.election.enable": "false",
            # A dev broker: no 3 s wait before the first consumer group rebalance.
            "group.initial.rebalance.delay.ms": "0",
        }
        if self.scram_tls is not None:
            props.update(self._scram_tls_props(self.scram_tls))
        self._props.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self._props.chmod(0o600)  # may hold the broker user's password
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

    @staticmethod
    def _scram_tls_props(sec: ScramTls) -> dict[str, str]:
        pw = sec.tls.store_password
        broker_pw = sec.users[sec.broker_user].get_secret_value()
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{sec.broker_user}" password="{broker_pw}";'
        )
        return {
            "sasl.enabled.mechanisms": sec.mechanism,
            "sasl.mechanism.inter.broker.protocol": sec.mechanism,
            # A Password-typed config: Kafka prints it as [hidden] in its logs.
            f"listener.name.sasl_ssl.{sec.mechanism.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(sec.tls.keystore),
            "ssl.keystore.password": pw,
            "ssl.key.password": pw,
            "ssl.truststore.type": "PKCS12",
            "ssl.truststore.location": str(sec.tls.truststore),
            "ssl.truststore.password": pw,
            "ssl.client.auth": "none",  # clients authenticate with SCRAM, not certificates
        }


def _sigkill(pid: int) -> None:
    """SIGKILL a broker's process group and wait until it is gone."""
    os.killpg(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.05)


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
