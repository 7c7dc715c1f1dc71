"""Redis Cluster: routing by slot, healing one node, cross-slot keys, cluster pipelines, bind."""

from __future__ import annotations

import asyncio
import binascii

import pytest
import redis
import redis.asyncio.cluster
import valkey.cluster
from _cluster import SLOTS, Cluster
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
