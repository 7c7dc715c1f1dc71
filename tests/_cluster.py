"""A real Redis Cluster on loopback, made of the same server binary the suite tests.

``Cluster.start(binary, directory)`` runs ``primaries`` primaries (each with
``replicas`` replicas), splits the 16384 slots between the primaries with
``CLUSTER ADDSLOTS`` (Redis 6.2 has no ADDSLOTSRANGE), joins them with
``CLUSTER MEET`` and waits until every node reports ``cluster_state:ok``.
A cluster bus listens on port + 10000, so ports are drawn below 55536 and
both must be free.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

SLOTS = 16384


#: ports handed out in this process: a node spawned a moment ago may not have bound its port yet
_issued: set[int] = set()


def _free_port() -> int:
    for _ in range(200):
        port = random.randrange(20000, 45000)
        if port not in _issued and all(_bindable(p) for p in (port, port + 10000)):
            _issued.add(port)
            return port
    raise RuntimeError("no free loopback port pair (port, port + 10000) found")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait(what: str, ready: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():  # type: ignore[operator]
                return
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"test cluster: timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Node:
    port: int
    process: subprocess.Popen[bytes]
    argv: list[str] = field(default_factory=list)  # how it was started, to start it again
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis(host="127.0.0.1", port=self.port)

    @property
    def node_id(self) -> str:
        return str(self.client.execute_command("CLUSTER MYID").decode())


@dataclass
class Cluster:
    primaries: list[Node]
    replicas: list[Node]

    @property
    def nodes(self) -> list[Node]:
        return self.primaries + self.replicas

    @property
    def port(self) -> int:
        return self.primaries[0].port

    @classmethod
    def start(
        cls, binary: str, directory: Path, primaries: int = 3, replicas: int = 1, persistent: bool = False
    ) -> Cluster:
        """Start and form a cluster; ``persistent`` nodes keep an append-only file synced before every
        reply, so that a node killed and started again (:meth:`restart`) has every acknowledged write."""
        nodes: list[Node] = []
        try:
            for _ in range(primaries * (1 + replicas)):
                nodes.append(_spawn(binary, directory, persistent))
            for node in nodes:
                _wait(f"port {node.port}", node.client.ping)
            cluster = cls(nodes[:primaries], nodes[primaries:])
            cluster._form(replicas)
        except BaseException:
            for node in nodes:
                _stop(node)
            raise
        return cluster

    def _form(self, replicas: int) -> None:
        share = SLOTS // len(self.primaries)
        for i, node in enumerate(self.primaries):
            last = SLOTS if i == len(self.primaries) - 1 else (i + 1) * share
            node.client.execute_command("CLUSTER ADDSLOTS", *range(i * share, last))
        # distinct config epochs from the start, as redis-cli --cluster create gives them: otherwise the
        # nodes settle their equal epochs by gossip for a while, and a takeover meanwhile may lose
        for epoch, node in enumerate(self.nodes, 1):
            node.client.execute_command("CLUSTER SET-CONFIG-EPOCH", epoch)
        first = self.primaries[0].client
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER MEET", "127.0.0.1", node.port)
        count = len(self.nodes)
        for node in self.nodes:
            _wait(
                "every node to meet",
                lambda c=node.client: int(c.cluster("info")["cluster_known_nodes"]) == count,
            )
        for i, node in enumerate(self.replicas):
            primary = self.primaries[i // replicas]
            node.client.execute_command("CLUSTER REPLICATE", primary.node_id)
        for node in self.replicas:
            _wait("replication", lambda c=node.client: _synced(c))
        for node in self.nodes:
            _wait("cluster_state:ok", lambda c=node.client: c.cluster("info")["cluster_state"] == "ok")
            _wait("a full slot map", lambda c=node.client: _covered(c) == SLOTS)

    def replica_of(self, primary: Node) -> Node:
        return next(n for n in self.replicas if n.client.info("replication")["master_port"] == primary.port)

    def failover(self, primary: Node) -> Node:
        """Promote ``primary``'s replica (``CLUSTER FAILOVER TAKEOVER``: no election); return it."""
        replica = self.replica_of(primary)
        # the replica claims the slots with an epoch above the highest it knows: it must know the highest
        _wait("every node to agree on the epoch", lambda: len({_epoch(n.client) for n in self.nodes}) == 1)
        replica.client.execute_command("CLUSTER FAILOVER", "TAKEOVER")
        _wait("the replica's promotion", lambda: replica.client.info("replication")["role"] == "master")
        _wait("the old primary to follow", lambda: primary.client.info("replication")["role"] == "slave")
        # a replica that resyncs may empty its script cache: let that happen now, not mid-test
        _wait("the old primary's resync", lambda: _synced(primary.client))
        for node in self.nodes:
            _wait("cluster_state:ok", lambda c=node.client: c.cluster("info")["cluster_state"] == "ok")
        self.primaries[self.primaries.index(primary)] = replica
        self.replicas[self.replicas.index(replica)] = primary
        return replica

    def restart(self, node: Node, down: float) -> None:
        """Kill ``node`` (SIGKILL), leave it down ``down`` seconds, start it again from its own directory
        (its ``nodes.conf``, and its data if persistent), and wait until the cluster is whole again.

        ``down`` must stay well below the node timeout (5 s), so that no replica takes over meanwhile.
        """
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(10)
        time.sleep(down)
        node.process = subprocess.Popen(node.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(f"port {node.port}", lambda: _up(node.client))
        for other in self.nodes:
            _wait("cluster_state:ok", lambda c=other.client: c.cluster("info")["cluster_state"] == "ok")

    def replicas_listed(self) -> None:
        """Wait until CLUSTER SLOTS lists every replica: Redis 7 hides those that never replicated a write.

        Writes to every primary first (a FLUSHALL), so that each replica has something to replicate.
        """
        for node in self.primaries:
            node.client.flushall()
        ports = {node.port for node in self.replicas}
        _wait("every replica in CLUSTER SLOTS", lambda: _listed(self.primaries[0].client) >= ports)

    def stop(self) -> None:
        for node in self.nodes:
            _stop(node)


def _synced(replica: redis.Redis) -> bool:
    info = replica.info("replication")
    return bool(info["master_link_status"] == "up" and not info.get("master_sync_in_progress"))


def _epoch(client: redis.Redis) -> int:
    return int(client.cluster("info")["cluster_current_epoch"])


def _listed(client: redis.Redis) -> set[int]:
    return {int(node[1]) for entry in client.execute_command("CLUSTER SLOTS") for node in entry[3:]}


def _covered(client: redis.Redis) -> int:
    slots = client.execute_command("CLUSTER SLOTS")
    return sum(int(entry[1]) - int(entry[0]) + 1 for entry in slots)


def _up(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.BusyLoadingError:  # still reading its data
        return False


def _spawn(binary: str, directory: Path, persistent: bool = False) -> Node:
    port = _free_port()
    workdir = directory / str(port)
    workdir.mkdir(parents=True)
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
    argv = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", "5000",
        "--dir", str(workdir),
        "--save", "",
        *persistence,
        "--repl-diskless-sync-delay", "0",
        "--logfile", "server.log",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Node(port, process, argv)


def _stop(node: Node) -> None:
    node.client.close()
    if node.process.poll() is None:
        node.process.send_signal(signal.SIGTERM)
        try:
            node.process.wait(10)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()
