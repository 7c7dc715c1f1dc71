"""Redis Cluster: routing by slot, healing one node, cross-slot keys, cluster pipelines, bind, and the
calls luaimport routes itself (EVALSHA_RO, FCALL, FCALL_RO) as redis-py would, without COMMAND GETKEYS."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
import valkey.cluster
from _clients import CLUSTER, Runner
from _cluster import SLOTS, Cluster, _wait
from _servers import flags_supported
from redis.cluster import RedisCluster

import luaimport
from luaimport import LuaCrossSlotError

pytestmark = pytest.mark.usefixtures("import_state")


def key_per_slot() -> list[str]:
    """One key for every slot (no hash tags: the whole key is hashed, with Redis's CRC16)."""
    keys: dict[int, str] = {}
    i = 0
    while len(keys) < SLOTS:
        key = f"k{i}"
        keys.setdefault(binascii.crc_hqx(key.encode(), 0) % SLOTS, key)
        i += 1
    return [keys[slot] for slot in range(SLOTS)]


@pytest.fixture
def rc(cluster: Cluster) -> RedisCluster:
    client = RedisCluster(host="127.0.0.1", port=cluster.port)
    yield client
    client.close()


def evalsha_calls(cluster: Cluster, command: str = "evalsha") -> list[int]:
    return [
        n.client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0) for n in cluster.primaries
    ]


def test_a_cold_cluster_serves_calls_on_every_slot(cluster: Cluster, rc: RedisCluster) -> None:
    import lipkg.single as single

    keys = key_per_slot()
    assert {rc.keyslot(key) for key in keys} == set(range(SLOTS))
    assert [single(rc, [key], [slot]) for slot, key in enumerate(keys)] == list(range(SLOTS))
    for node in cluster.primaries:
        assert node.client.script_exists(single.sha) == [True]
    # one miss: its heal loaded on every primary and ran the script once by its text
    assert sum(evalsha_calls(cluster)) == SLOTS
    assert sum(evalsha_calls(cluster, "eval")) == 1


def test_script_flush_on_one_primary_heals_without_user_action(cluster: Cluster, rc: RedisCluster) -> None:
    import lipkg.single as single

    keys = key_per_slot()
    by_node = {
        n.port: next(k for k in keys if rc.get_node_from_key(k).port == n.port) for n in cluster.primaries
    }
    luaimport.bind(rc, single)
    flushed, *others = cluster.primaries
    flushed.client.script_flush()
    for node in cluster.nodes:
        node.client.config_resetstat()
    assert [single(rc, [by_node[n.port]], [1]) for n in cluster.primaries] == [1, 1, 1]
    assert command_count(flushed.client, "evalsha") == 1  # the miss
    assert command_count(flushed.client, "eval") == 1  # then the script, run by its text
    for node in others:
        assert command_count(node.client, "evalsha") == 1
    for node in cluster.primaries:  # the heal loads on every primary, once, and asks nothing first
        assert command_count(node.client, "script") == 1
    assert flushed.client.script_exists(single.sha) == [True]


def test_a_failover_heals_on_the_promoted_replica(cluster: Cluster, rc: RedisCluster) -> None:
    import lipkg.single as single

    key = "{failover}n"
    old = next(n for n in cluster.primaries if n.port == rc.get_node_from_key(key).port)
    luaimport.bind(rc, single)
    assert single(rc, [key], [1]) == 1
    assert old.client.wait(1, 5000) == 1  # the write reached the replica
    # Redis 6.2 replicates SCRIPT LOAD to replicas, Redis 7 and Valkey do not: start alike, with none
    cluster.replica_of(old).client.script_flush()
    new = cluster.failover(old)
    assert single(rc, [key], [1]) == 2  # MOVED to the promoted replica, NOSCRIPT there, healed there
    assert new.client.script_exists(single.sha) == [True]
    assert rc.get_node_from_key(key).port == new.port


def test_a_call_heals_while_its_slot_migrates(cluster: Cluster, rc: RedisCluster) -> None:
    import lipkg.single as single

    key = "{migrating}n"
    slot = rc.keyslot(key)
    source = next(n for n in cluster.primaries if n.port == rc.get_node_from_key(key).port)
    target = next(n for n in cluster.primaries if n is not source)
    assert single(rc, [key], [1]) == 1
    target.client.script_flush()  # only the source has the script
    target.client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
    source.client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
    source.client.execute_command("MIGRATE", "127.0.0.1", target.port, key, 0, 5000)
    target.client.config_resetstat()
    try:
        assert single(rc, [key], [1]) == 2  # ASK to the target, NOSCRIPT there, EVAL asked there too
        assert command_count(target.client, "evalsha") == 1
        assert command_count(target.client, "eval") == 1
    finally:
        for node in cluster.primaries:
            node.client.execute_command("CLUSTER SETSLOT", slot, "NODE", target.node_id)
    assert target.client.script_exists(single.sha) == [True]


def command_count(client: redis.Redis, name: str) -> int:
    stats = client.info("commandstats")
    return sum(
        v["calls"] for k, v in stats.items() if k == f"cmdstat_{name}" or k.startswith(f"cmdstat_{name}|")
    )


def test_calls_without_keys_run_and_heal_on_any_primary(cluster: Cluster, rc: RedisCluster) -> None:
    import lipkg.basic as basic

    for i in range(30):
        assert basic.factorial(rc, [], [i % 6 + 1]) > 0
        if i == 15:
            for node in cluster.primaries:
                node.client.script_flush()
    assert sum(evalsha_calls(cluster)) >= 30


def test_keys_in_different_slots_fail_before_anything_is_sent(cluster: Cluster, rc: RedisCluster) -> None:
    import lipkg.basic as basic

    before = evalsha_calls(cluster)
    with pytest.raises(LuaCrossSlotError, match=r"lipkg.basic.identity\(\): keys hash to different") as info:
        basic.identity(rc, ["a", "b"], [])
    assert isinstance(info.value, redis.exceptions.RedisClusterException)
    assert info.value.slots == [("a", rc.keyslot("a")), ("b", rc.keyslot("b"))]
    assert "hash tag" in str(info.value)
    pipe = rc.pipeline()
    with pytest.raises(LuaCrossSlotError):
        basic.identity(pipe, ["a", "b"], [])
    assert len(pipe) == 0
    with pytest.raises(LuaCrossSlotError):  # equal as Python values, different keys to Redis
        basic.identity(rc, [1, 1.0], [])
    assert basic.identity(rc, ["{t}a", "{t}b"], [1]) == b"1"  # one slot through a hash tag
    # only the good call: a miss, and the script run by its text
    assert sum(evalsha_calls(cluster)) == sum(before) + 1
    assert sum(evalsha_calls(cluster, "eval")) == 1


def test_cross_slot_on_a_valkey_py_cluster_is_its_own_exception_too(cluster: Cluster) -> None:
    import lipkg.basic as basic

    client = valkey.cluster.ValkeyCluster(host="127.0.0.1", port=cluster.port)
    try:
        with pytest.raises(LuaCrossSlotError) as info:
            basic.identity(client, ["a", "b"], [])
    finally:
        client.close()
    assert isinstance(info.value, valkey.exceptions.ValkeyClusterException)
    assert isinstance(info.value, redis.exceptions.RedisClusterException)


def test_cross_slot_on_the_asyncio_cluster_client(cluster: Cluster) -> None:
    import lipkg.basic as basic

    async def scenario() -> None:
        client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=cluster.port)
        try:
            with pytest.raises(LuaCrossSlotError):
                await basic.identity(client, ["a", "b"], [])
            pipe = client.pipeline()
            with pytest.raises(LuaCrossSlotError):
                basic.identity(pipe, ["a", "b"], [])
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_cluster_pipeline_of_a_thousand_calls_matches_direct_calls(
    cluster: Cluster, rc: RedisCluster
) -> None:
    import lipkg.single as single

    keys = key_per_slot()[:: SLOTS // 1000][:1000]
    pipe = rc.pipeline()
    for i, key in enumerate(keys):
        single(pipe, [key], [i])
    piped = pipe.execute()
    values = [int(v) for v in rc.mget_nonatomic(keys)]
    for node in cluster.primaries:
        node.client.flushall()
    direct = [single(rc, [key], [i]) for i, key in enumerate(keys)]
    assert piped == direct == list(range(1000))
    assert [int(v) for v in rc.mget_nonatomic(keys)] == values


def test_bind_loads_on_every_primary(cluster: Cluster, rc: RedisCluster) -> None:
    import lipkg.basic as basic

    loaded = luaimport.bind(rc, basic)
    for node in cluster.primaries:
        assert all(node.client.script_exists(*loaded.values()))


# redis-py 5.1 added load balancing strategies and deprecated read_from_replicas
BALANCING = getattr(redis.cluster, "LoadBalancingStrategy", None)
READS = {"read_from_replicas": {"read_from_replicas": True}}
if BALANCING is not None:
    READS["load_balancing_strategy"] = {"load_balancing_strategy": BALANCING.ROUND_ROBIN}


@pytest.mark.filterwarnings("ignore:Call to '__init__' function with deprecated usage")
@pytest.mark.parametrize("reads", list(READS.values()), ids=list(READS))
def test_bind_loads_on_replicas_when_reads_may_go_there(cluster: Cluster, reads: dict[str, object]) -> None:
    import lipkg.basic as basic

    cluster.replicas_listed()
    client = RedisCluster(host="127.0.0.1", port=cluster.port, **reads)  # type: ignore[arg-type]
    try:
        assert {n.port for n in client.get_replicas()} == {n.port for n in cluster.replicas}
        loaded = luaimport.bind(client, basic)
    finally:
        client.close()
    for node in cluster.nodes:
        assert all(node.client.script_exists(*loaded.values()))


def test_cluster_transaction_watch_multi_and_discard(cluster: Cluster, rc: RedisCluster) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    if int(redis.__version__.split(".")[0]) < 6:  # redis-py 5 itself has no cluster transactions
        with pytest.raises(redis.exceptions.RedisClusterException):
            rc.pipeline(transaction=True)
        return
    pipe = rc.pipeline(transaction=True)
    pipe.watch("{t}n")
    assert single(pipe, ["{t}other"], [5]) == 5  # after WATCH: runs at once, loading the script
    pipe.multi()
    assert single(pipe, ["{t}n"], [1]) is pipe
    assert pipe.execute() == [1]
    pipe = rc.pipeline(transaction=True)
    pipe.multi()
    single(pipe, ["{t}n"], [1])
    basic.identity(pipe, ["{t}x"], [1])
    pipe.discard()
    pipe.set("{t}s", "kept")
    plain = rc.pipeline(transaction=True)  # what redis-py gives without luaimport
    plain.multi()
    plain.set("{t}s2", "kept")
    assert pipe.execute() == plain.execute()
    assert rc.mget("{t}n", "{t}s", "{t}x") == [b"1", b"kept", None]


@pytest.mark.skipif(int(redis.__version__.split(".")[0]) < 6, reason="redis-py 5 has no cluster transactions")
def test_read_only_calls_in_cluster_transactions_sync_and_asyncio(cluster: Cluster, rc: RedisCluster) -> None:
    """A ``--@readonly`` call in a cluster transaction goes as EVALSHA: redis-py would ask a node for the keys
    of an EVALSHA_RO, and its asyncio transaction fails doing so; the script's flag still refuses writes."""
    import flagpkg.reads as reads

    if not flags_supported(cluster.primaries[0].client):
        pytest.skip("Redis 6.2 has no script flags")
    rc.set("{t}r", "v")

    def queue(pipe: Any) -> None:
        pipe.multi()
        reads.get(pipe, ["{t}r"])
        reads.readonly_and_flags(pipe, ["{t}r"], [])
        reads.write_directly(pipe, ["{t}r"], [])

    pipe = rc.pipeline(transaction=True)
    queue(pipe)
    synced = pipe.execute(raise_on_error=False)

    async def asynced() -> list[Any]:
        client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=cluster.port)
        try:
            await client.initialize()  # else redis-py's transaction would, on the event loop it queues from
            pipe = client.pipeline(transaction=True)
            queue(pipe)
            return list(await pipe.execute(raise_on_error=False))
        finally:
            await client.aclose()

    for results in (synced, asyncio.run(asynced())):
        assert results[:2] == [b"v", 1]
        assert isinstance(results[2], luaimport.LuaError)
        assert "Write commands are not allowed" in str(results[2])
    assert rc.get("{t}r") == b"v"
    assert sum(per_node(cluster, "command|getkeys").values()) == 0


def test_asyncio_cluster_bind_before_first_use_then_calls_and_pipelines(cluster: Cluster) -> None:
    import lipkg.basic as basic

    cluster.replicas_listed()

    async def scenario() -> dict[str, str]:
        client = redis.asyncio.cluster.RedisCluster(
            host="127.0.0.1", port=cluster.port, **READS[list(READS)[-1]]
        )
        try:
            loaded: dict[str, str] = await luaimport.bind(client, basic)  # before the client knows its nodes
            assert await basic.factorial(client, [], [5]) == 120
            pipe = client.pipeline()
            basic.factorial(pipe, [], [3])
            assert await pipe.execute(True, True) == [6]  # raise_on_error, allow_redirections
            return loaded
        finally:
            await client.aclose()

    loaded = asyncio.run(scenario())
    for node in cluster.nodes:
        assert all(node.client.script_exists(*loaded.values()))


# -- calls whose keys redis-py asks a node for (EVALSHA_RO, FCALL, FCALL_RO): routed by luaimport --------

#: keys on every primary, one hash tag each
ROUTED_KEYS = [f"{{g{i}}}k" for i in range(12)]
#: the cluster kinds of tests/_clients.py: direct and pipelined, sync and asyncio, redis-py and valkey-py
ROUTED_KINDS = [*CLUSTER, "valkey_cluster", "valkey_cluster_pipeline"]


@pytest.fixture
def routed_cluster(cluster: Cluster) -> Cluster:
    """The cluster, with ``ROUTED_KEYS`` set to their own names and replicated; skips on Redis 6.2."""
    if not flags_supported(cluster.primaries[0].client):
        pytest.skip("Redis 6.2 has no EVALSHA_RO, FCALL_RO or Functions")
    cluster.replicas_listed()
    writer = RedisCluster(host="127.0.0.1", port=cluster.port)
    try:
        for key in ROUTED_KEYS:
            writer.set(key, key)
        owners = {writer.get_node_from_key(key).port for key in ROUTED_KEYS}
        assert owners == {node.port for node in cluster.primaries}
    finally:
        writer.close()
    return cluster


def routed_runner(cluster: Cluster, kind: str, **options: Any) -> Runner:
    """A runner whose client runs ``flagpkg.reads`` on scripts (``get`` as EVALSHA_RO), and ``lipkg.single``
    (FCALL) and ``fnpkg.replies`` (``get`` as FCALL_RO) on Functions, everywhere, with fresh statistics."""
    import flagpkg.reads as reads
    import fnpkg.replies as replies
    import lipkg.single as single

    runner = Runner(kind, {}, cluster.port, **options)
    try:
        runner.wait(luaimport.bind(runner.client, reads))
        runner.wait(luaimport.bind(runner.client, single, replies, backend="functions"))
    except BaseException:
        runner.close()
        raise
    for node in cluster.primaries:  # the libraries have reached the replicas
        assert node.client.wait(1, 5000) == 1
    for node in cluster.nodes:
        node.client.config_resetstat()
    return runner


def per_node(cluster: Cluster, command: str) -> dict[int, int]:
    return {node.port: command_count(node.client, command) for node in cluster.nodes}


@pytest.mark.parametrize("kind", ROUTED_KINDS)
def test_calls_redis_py_would_ask_a_node_the_keys_of_send_no_command_getkeys(
    routed_cluster: Cluster, kind: str
) -> None:
    """Keyed calls, and calls without keys (which go to a random slot's node)."""
    import flagpkg.reads as reads
    import fnpkg.keyless as keyless
    import fnpkg.replies as replies
    import lipkg.single as single

    runner = routed_runner(routed_cluster, kind)
    try:
        runner.wait(luaimport.bind(runner.client, keyless, backend="functions"))
        results = runner.calls(
            [(reads.get, [key], []) for key in ROUTED_KEYS]
            + [(single, [f"{key}:n"], [i]) for i, key in enumerate(ROUTED_KEYS)]
            + [(replies.get, [key], []) for key in ROUTED_KEYS]
            + [(reads.many_flags, [], []), (keyless.echo, [], ["e"]), (keyless.peek, [], ["p"])]
        )
    finally:
        runner.close()
    names = [key.encode() for key in ROUTED_KEYS]
    assert results == [*names, *range(len(ROUTED_KEYS)), *names, b"flagged:many", b"echo:e", b"peek:p"]
    counts = {
        command: sum(per_node(routed_cluster, command).values())
        for command in ("command|getkeys", "evalsha_ro", "fcall", "fcall_ro", "evalsha", "eval_ro", "eval")
    }
    assert counts == {
        "command|getkeys": 0,  # redis-py would ask once per call (5.2, 6.4) or twice (7.1, 8.1)
        "evalsha_ro": len(ROUTED_KEYS) + 1,
        "fcall": len(ROUTED_KEYS) + 1,
        "fcall_ro": len(ROUTED_KEYS) + 1,
        "evalsha": 0,
        "eval_ro": 0,  # no miss
        "eval": 0,
    }


#: how the client may read from replicas, and not at all
ROUTING_READS: dict[str, dict[str, Any]] = {"primaries": {}, **READS}
if BALANCING is not None:
    ROUTING_READS["replicas_only"] = {"load_balancing_strategy": BALANCING.ROUND_ROBIN_REPLICAS}


@pytest.mark.filterwarnings("ignore:Call to '__init__' function with deprecated usage")
@pytest.mark.parametrize("reads", list(ROUTING_READS.values()), ids=list(ROUTING_READS))
@pytest.mark.parametrize("kind", CLUSTER)
def test_calls_luaimport_routes_land_on_the_nodes_redis_py_routes_them_to(
    routed_cluster: Cluster, kind: str, reads: dict[str, Any]
) -> None:
    """The same calls, through luaimport and as raw commands that redis-py routes itself (asking a node for
    their keys), on two fresh clients alike: each node runs as many of each (replicas too, as redis-py's
    release and the client's reads decide: FCALL_RO is a read from redis-py 7.1)."""
    import flagpkg.reads as flagged
    import fnpkg.replies as replies
    import lipkg.single as single

    def raw(command: str, name: str) -> Any:
        return lambda client, keys, args: client.execute_command(command, name, len(keys), *keys, *args)

    pairs = [  # luaimport's call, redis-py's command, the command's name, its key's suffix and args
        (flagged.get, raw("EVALSHA_RO", flagged.get.sha), "evalsha_ro", "", []),
        (single, raw("FCALL", single.function_name), "fcall", ":n", [1]),
        (replies.get, raw("FCALL_RO", replies.get.function_name), "fcall_ro", "", []),
    ]
    landed: list[dict[str, dict[int, int]]] = []
    for side in ("luaimport", "redis-py"):
        calls = [
            (ours if side == "luaimport" else redis_py, [key + suffix], args)
            for ours, redis_py, _, suffix, args in pairs
            for key in ROUTED_KEYS * 3
        ]
        runner = routed_runner(routed_cluster, kind, **reads)
        try:
            runner.calls(calls)
        finally:
            runner.close()
        landed.append({command: per_node(routed_cluster, command) for *_, command, _, _ in pairs})
    luaimports, redis_pys = landed
    assert luaimports == redis_pys
    assert sum(luaimports["fcall_ro"].values()) == 3 * len(ROUTED_KEYS)
    replicas = {node.port for node in routed_cluster.replicas}
    assert not any(n for port, n in luaimports["fcall"].items() if port in replicas)
    on_replicas = any(n for port, n in luaimports["evalsha_ro"].items() if port in replicas)
    assert on_replicas == bool(reads)


def routed_calls(key: str) -> list[tuple[Any, list[str], list[Any]]]:
    """One call of each command luaimport routes itself, on ``key``'s slot: EVALSHA_RO, FCALL, FCALL_RO."""
    import flagpkg.reads as reads
    import fnpkg.replies as replies
    import lipkg.single as single

    return [(reads.get, [key], []), (single, [f"{key}:n"], [1]), (replies.get, [key], [])]


def ran(node: Any) -> list[int]:
    return [command_count(node.client, command) for command in ("evalsha_ro", "fcall", "fcall_ro")]


@pytest.mark.parametrize("kind", ["cluster", "cluster_async", "cluster_pipeline", "cluster_async_pipeline"])
def test_routed_calls_follow_ask_while_their_slot_migrates_and_moved_once_it_has(
    routed_cluster: Cluster, kind: str
) -> None:
    key = ROUTED_KEYS[0]
    runner = routed_runner(routed_cluster, kind)
    try:
        assert runner.calls(routed_calls(key)) == [key.encode(), 1, key.encode()]
        owner = RedisCluster(host="127.0.0.1", port=routed_cluster.port)
        slot, port = owner.keyslot(key), owner.get_node_from_key(key).port
        owner.close()
        source = next(n for n in routed_cluster.primaries if n.port == port)
        target = next(n for n in routed_cluster.primaries if n is not source)
        target.client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
        source.client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
        keys = ["KEYS", key, f"{key}:n"]
        source.client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, *keys)
        try:
            assert runner.calls(routed_calls(key)) == [key.encode(), 2, key.encode()]  # ASK to the target
            assert ran(target) == [1, 1, 1]
        finally:
            for node in routed_cluster.primaries:
                node.client.execute_command("CLUSTER SETSLOT", slot, "NODE", target.node_id)
        assert runner.calls(routed_calls(key)) == [key.encode(), 3, key.encode()]  # MOVED to the target
        assert ran(target) == [2, 2, 2]
        assert ran(source) == [1, 1, 1]  # the first calls only: the others were redirected
    finally:
        runner.close()


def test_routed_calls_follow_moved_to_a_promoted_replica(routed_cluster: Cluster) -> None:
    key = ROUTED_KEYS[1]
    runner = routed_runner(routed_cluster, "cluster")
    try:
        assert runner.calls(routed_calls(key)) == [key.encode(), 1, key.encode()]
        old = next(n for n in routed_cluster.primaries if n.port == runner.client.get_node_from_key(key).port)
        assert old.client.wait(1, 5000) == 1
        routed_cluster.replica_of(old).client.script_flush()  # Redis 7 and Valkey do not replicate loads
        new = routed_cluster.failover(old)
        new.client.config_resetstat()
        # MOVED to the promoted replica, which has the libraries (replicated) but not the script: EVALSHA_RO
        # misses there and heals (EVAL_RO, routed by luaimport too)
        assert runner.calls(routed_calls(key)) == [key.encode(), 2, key.encode()]
        assert ran(new) == [1, 1, 1]
        assert command_count(new.client, "eval_ro") == 1
    finally:
        runner.close()


@contextlib.contextmanager
def refusing_keys(cluster: Cluster, node: Any, slot: int) -> Iterator[None]:
    """``node`` refuses every command with keys (CLUSTERDOWN) while it does not serve ``slot``, one of its own
    (``cluster-require-full-coverage``): a failure redis-py retries, and which the node counts
    (``rejected_calls``), on every attempt."""
    node.client.execute_command("CLUSTER DELSLOTS", slot)
    try:
        _wait("the node's fail state", lambda: node.client.cluster("info")["cluster_state"] == "fail")
        yield
    finally:
        node.client.execute_command("CLUSTER ADDSLOTS", slot)
        for other in cluster.nodes:
            _wait("cluster_state:ok", lambda c=other.client: c.cluster("info")["cluster_state"] == "ok")


def rejected(node: Any, command: str) -> int:
    return int(node.client.info("commandstats").get(f"cmdstat_{command}", {}).get("rejected_calls", 0))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # cluster_error_retry_attempts, in redis-py 6+
@pytest.mark.parametrize("retries", [0, 1])
@pytest.mark.parametrize("kind", ["cluster", "cluster_async"])
def test_a_routed_call_is_sent_as_often_as_redis_py_sends_a_command_it_routes(
    routed_cluster: Cluster, kind: str, retries: int
) -> None:
    """redis-py does not retry a command sent with ``target_nodes``: luaimport retries it as redis-py's own
    loop would, so a call is refused as many times as a plain EVALSHA, which redis-py routes itself.  The
    refusing node is the client's default node, which redis-py's loop replaces between attempts."""
    import flagpkg.reads as reads

    commands = ["evalsha", "evalsha_ro", "fcall", "fcall_ro"]
    functions = [reads.plain, *(fn for fn, _, _ in routed_calls(""))]
    runners = [routed_runner(routed_cluster, kind, cluster_error_retry_attempts=retries) for _ in commands]
    try:
        client = runners[0].client
        default = client.get_default_node()
        node = next(n for n in routed_cluster.primaries if n.port == default.port)
        keys = (f"{{d{i}}}k" for i in range(100))
        key = next(k for k in keys if client.get_node_from_key(k).port == node.port)
        slots = client.nodes_manager.slots_cache
        spare = next(s for s in range(SLOTS) if s != client.keyslot(key) and slots[s][0].port == node.port)
        outcomes: dict[str, int] = {}
        with refusing_keys(routed_cluster, node, spare):
            for command, fn, runner in zip(commands, functions, runners, strict=True):
                with pytest.raises(redis.exceptions.ClusterDownError):
                    runner.call(fn, [key])
                outcomes[command] = rejected(node, command)
    finally:
        for runner in runners:
            runner.close()
    assert outcomes == dict.fromkeys(commands, retries + 1)
