"""Cluster faults: SCRIPT FLUSH on one primary, then a restart of another, during calls spread
over all 16,384 slots.

The cluster is the test's own (3 primaries, one replica each), its nodes keeping an append-only
file synced before every reply, so the restarted primary comes back with what it acknowledged;
it is down for less than the node timeout, so no replica takes over.  The cluster client never
resends a command itself (no retries), so a call that ran twice could only be luaimport's doing.

Asserted: every call succeeds or fails with a connection or cluster error; every reply is its
own call's; no call ran twice; every acknowledged call ran; a call that ran was acknowledged or
failed with a connection error (outcome unknown to the client); each slot's counter is the
number of runs recorded in that slot; calls on every primary succeed again after the restart.
"""

from __future__ import annotations

import binascii
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from _cluster import SLOTS, Cluster
from redis.cluster import RedisCluster

from ._support import Ledger, counting, join_all, no_retry, record, server_name, size

THREADS = 4
PHASE = size(ci=400, full=6_000)  # successful calls before the flush, between the faults, and after
DOWN = 0.5  # seconds the restarted primary stays dead (the node timeout is 5 s)
TIME_LIMIT = size(ci=90, full=600)
STRIDE = 7919  # call i goes to slot i * STRIDE % 16384: every slot within 16,384 calls, spread out

#: errors that say the node could not be reached: the server may have run the call
UNKNOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: errors that are clear about the cluster: connection errors, and the cluster's refusals
CLEAR = (*UNKNOWN, redis.exceptions.RedisClusterException, redis.exceptions.ClusterError)
REDIS_PY = int(redis.__version__.split(".")[0])
#: Before redis-py 8, a cluster client that meets a connection error re-reads the slot map and
#: then disconnects every connection to the node it asked, those other threads are reading from
#: included (``NodesManager.initialize``): their calls fail with ``ValueError: I/O operation on
#: closed file`` or ``AttributeError`` and may have run (seen with 5.2.1, 6.4.0 and 7.1.0).
#: redis-py 8 disconnects only free connections.  So before 8 each thread has its own client.
SHARED_CLIENT = REDIS_PY >= 8


def tag_per_slot() -> list[str]:
    """A hash tag for every slot: ``{tag}:x`` keys live in that slot (Redis's CRC16)."""
    tags: dict[int, str] = {}
    for i in itertools.count():
        tag = f"s{i}"
        tags.setdefault(binascii.crc_hqx(tag.encode(), 0) % SLOTS, tag)
        if len(tags) == SLOTS:
            return [tags[slot] for slot in range(SLOTS)]
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def durable_cluster(server_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster.start(server_binary, tmp_path_factory.mktemp("durable-cluster"), persistent=True)
    yield cluster
    cluster.stop()


def cluster_client(port: int) -> RedisCluster:
    """A cluster client that never resends a command after an error (redis-py 5 counts its retries
    in ``cluster_error_retry_attempts``, 6 and later in ``retry``)."""
    options: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    if REDIS_PY < 6:
        options["cluster_error_retry_attempts"] = 0
    else:
        options["retry"] = no_retry()
    return RedisCluster(host="127.0.0.1", port=port, **options)


def test_flush_then_restart_during_calls_over_every_slot(durable_cluster: Cluster) -> None:
    cluster = durable_cluster
    count = counting().count
    tags = tag_per_slot()
    client = cluster_client(cluster.port)
    clients = [client if SHARED_CLIENT else cluster_client(cluster.port) for _ in range(THREADS)]
    flushed, restarted = cluster.primaries[0], cluster.primaries[1]
    owner = {slot: node.port for node in cluster.primaries for slot in _slots_of(client, node.port)}
    ledger = Ledger()
    slot_of: dict[str, int] = {}
    ok_by_phase: Counter[tuple[int, int]] = Counter()  # (phase, primary port) -> successful calls
    phase = 0
    lock = threading.Lock()
    numbers = itertools.count()
    stop = threading.Event()
    deadline = time.monotonic() + TIME_LIMIT

    def calls(client: RedisCluster) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                i = next(numbers)
            if i >= 1_000_000:
                return
            slot = i * STRIDE % SLOTS
            call_id = f"c{i}"
            slot_of[call_id] = slot
            try:
                reply = count(client, [f"{{{tags[slot]}}}:n", f"{{{tags[slot]}}}:runs"], [call_id])
            except Exception as exc:
                ledger.fail(call_id, exc)
                stop.wait(0.005)  # a node is down: do not spin
            else:
                ledger.ok(call_id, reply)
                with lock:
                    ok_by_phase[phase, owner[slot]] += 1

    def wait_for(n: int) -> None:
        while sum(v for (p, _), v in ok_by_phase.items() if p == phase) < n:
            assert time.monotonic() < deadline, f"too few calls succeeded in {TIME_LIMIT} s: {ok_by_phase}"
            time.sleep(0.01)

    workers = [threading.Thread(target=calls, args=(clients[t],), name=f"caller-{t}") for t in range(THREADS)]
    try:
        for worker in workers:
            worker.start()
        wait_for(PHASE)
        flushed.client.script_flush()
        phase = 1
        wait_for(PHASE)
        cluster.restart(restarted, DOWN)
        phase = 2
        wait_for(PHASE)
        stop.set()
        join_all(workers, 30)
        runs, counter = _traces(client, tags, set(slot_of.values()))
        heals = {node.port: _command_calls(node.client, "eval") for node in cluster.primaries}
        name = server_name(cluster.primaries[0].client)
    finally:
        stop.set()
        for each in {id(c): c for c in [client, *clients]}.values():
            each.close()
    figures = ledger.settle(runs, counter, unknown=lambda exc: isinstance(exc, UNKNOWN))
    record(
        "cluster faults",
        name,
        calls=len(slot_of),
        slots=len(set(slot_of.values())),
        heals_on_flushed=heals[flushed.port],
        heals_on_restarted=heals[restarted.port],
        down_seconds=DOWN,
        errors=dict(ledger.errors().most_common(6)),
        redis_py=redis.__version__,
        clients=len({id(c) for c in clients}),
        **figures,
    )
    unclear = [exc for exc in ledger.failed.values() if not isinstance(exc, CLEAR)]
    assert unclear == [], f"failures that are neither connection nor cluster errors: {unclear[:5]}"
    for node in cluster.primaries:  # calls to every primary work after the restart
        assert ok_by_phase[2, node.port] > 0, ok_by_phase


def _slots_of(client: RedisCluster, port: int) -> list[int]:
    return [slot for slot in range(SLOTS) if client.nodes_manager.slots_cache[slot][0].port == port]


def _traces(client: RedisCluster, tags: list[str], slots: set[int]) -> tuple[dict[bytes, bytes], int]:
    """Every slot's runs hash, merged, and the sum of the slots' counters (read from the primaries)."""
    runs: dict[bytes, bytes] = {}
    counter = 0
    ordered = sorted(slots)
    for start in range(0, len(ordered), 1_000):
        with client.pipeline() as pipe:
            for slot in ordered[start : start + 1_000]:
                pipe.get(f"{{{tags[slot]}}}:n")
                pipe.hgetall(f"{{{tags[slot]}}}:runs")
            replies = pipe.execute()
        for n, hash_ in zip(replies[::2], replies[1::2], strict=True):
            counter += int(n or 0)
            assert not runs.keys() & hash_.keys()
            runs.update(hash_)
    return runs, counter


def _command_calls(client: redis.Redis, name: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
