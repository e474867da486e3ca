"""A local Apache Kafka cluster for the reliability tests: N nodes of ``LocalKafka``.

Test tooling, so it lives with the tests (``recstream/`` ships the single broker the
CLI runs).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from recstream.errors import ConfigError, KafkaError
from recstream.kafka_admin import wait_for_broker
from recstream.localkafka import LocalKafka, NodeRole, ScramTls, new_cluster_id
from recstream.settings import KafkaSecurity, LocalKafkaSettings


class LocalKafkaCluster:
    """N combined broker/controller nodes on loopback: one cluster id, a static quorum.

    ``ports`` gives each node's (client port, controller port); node ``i`` lives
    in ``<home>/node-<i>``. Internal topics get ``min(3, size)`` replicas and
    ``min.insync.replicas`` one less (2 of 3), so the cluster survives one lost node.
    """

    def __init__(
        self,
        config: LocalKafkaSettings,
        home: Path,
        cache_dir: Path,
        ports: list[tuple[int, int]],
        *,
        scram_tls: ScramTls | None = None,
    ) -> None:
        if not ports:
            raise ConfigError("a cluster needs at least one node")
        size = len(ports)
        voters = ",".join(f"{i + 1}@{config.host}:{cp}" for i, (_, cp) in enumerate(ports))
        cluster_id_file = home / "cluster.id"
        home.mkdir(parents=True, exist_ok=True)
        if not cluster_id_file.is_file():
            cluster_id_file.write_text(new_cluster_id())
        replication = min(3, size)
        role = NodeRole(
            voters=voters,
            cluster_id=cluster_id_file.read_text().strip(),
            replication=replication,
            min_isr=max(1, replication - 1),
        )
        self.nodes = [
            LocalKafka(
                config.model_copy(update={"port": p, "controller_port": cp}),
                home / f"node-{i + 1}",
                cache_dir,
                role=NodeRole(**{**role.__dict__, "node_id": i + 1}),
                scram_tls=scram_tls,
            )
            for i, (p, cp) in enumerate(ports)
        ]
        self.config = config

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def security(self) -> KafkaSecurity:
        return self.nodes[0].security

    def start(self) -> None:
        """Launch every node that is not running, then wait until all are brokers again."""
        for node in self.nodes:
            node.launch()
        self.wait_all()

    def wait_all(self, nodes: list[LocalKafka] | None = None) -> None:
        """Wait until each of ``nodes`` (default all) answers on its own listener and
        the cluster's metadata lists every broker."""

        def alive() -> bool:
            return all(n.running() for n in self.nodes)

        timeout = self.config.start_timeout_s
        try:
            for node in nodes or self.nodes:
                wait = wait_for_broker(
                    node.bootstrap, timeout_s=timeout, security=self.security, alive=alive
                )
                asyncio.run(wait)
            wait = wait_for_broker(
                self.bootstrap,
                timeout_s=timeout,
                security=self.security,
                alive=alive,
                expect_brokers=len(self.nodes),
            )
            asyncio.run(wait)
        except KafkaError as exc:
            tails = "\n".join(f"node {n.role.node_id}:\n{n.tail_log(10)}" for n in self.nodes)
            self.stop()
            raise KafkaError(f"{exc}\nlast broker log lines:\n{tails}") from exc

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (0-based); the others keep serving."""
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        """Start node ``index`` again on its data and wait until the cluster has every broker."""
        self.nodes[index].launch()
        self.wait_all([self.nodes[index]])

    def stop(self) -> None:
        # All at once: a node stopped last cannot finish a controlled shutdown
        # once the quorum is gone, and would wait out stop_timeout_s.
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(LocalKafka.stop, self.nodes))

    def pids(self) -> list[int | None]:
        return [n.pid() for n in self.nodes]
