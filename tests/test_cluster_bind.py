"""bind() on a cluster: one pipelined round trip per node, however many scripts it loads.

Round trips are counted on the client side (``_writes``).  The clients
connect to every node before the count starts: the handshake of a new
connection is not bind's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import valkey
from _clients import CLIENTS
from _cluster import Cluster
from _servers import has_functions
from _writes import counted_writes

import luaimport
from luaimport import LuaModule, LuaSyntaxError

pytestmark = pytest.mark.usefixtures("import_state")

FUNCTIONS = 500
#: (client library, asyncio) of every cluster client
FLAVOURS = [("redis", False), ("redis", True), ("valkey", False), ("valkey", True)]
FLAVOUR_IDS = ["redis", "redis-asyncio", "valkey", "valkey-asyncio"]

Run = Callable[[Any], Any]


def many_functions(count: int, broken: int | None = None) -> LuaModule:
    """A module of ``count`` functions, two lines each; function number ``broken`` does not compile.

    Built from a string: a file of hundreds of such functions would say nothing more.
    """
    blocks = [f"--@function f{i}\nreturn {i}\n" for i in range(count)]
    if broken is not None:
        blocks[broken] = f"--@function f{broken}\nlocal a = = {broken}\n"
    return luaimport.loads("".join(blocks), "many", "many.lua")


@pytest.fixture(scope="module")
def many() -> LuaModule:
    return many_functions(FUNCTIONS)


@pytest.fixture
def writes() -> Iterator[collections.Counter[int]]:
    """The writes clients make from now on (one per round trip), by the port of the server written to."""
    with counted_writes() as counts:
        yield counts


@contextlib.contextmanager
def cluster_client(flavour: tuple[str, bool], port: int, **options: Any) -> Iterator[tuple[Any, Run]]:
    """A cluster client of ``flavour`` that knows its nodes, and ``run``, which waits for what it returns."""
    library, is_async = flavour
    _, cls = CLIENTS[library, is_async]
    client = cls(host="127.0.0.1", port=port, **options)
    if not is_async:
        with contextlib.closing(client):
            yield client, lambda result: result
        return
    with asyncio.Runner() as runner:  # which cancels what a failed call left running, when it closes
        runner.run(client.initialize())
        try:
            yield client, runner.run
        finally:
            runner.run(client.aclose())


def script_loads(node: redis.Redis) -> int:
    """The SCRIPT LOADs ``node`` ran; on Redis 6.2, which has no per-subcommand stats, every SCRIPT."""
    stats = node.info("commandstats")
    return int((stats.get("cmdstat_script|load") or stats.get("cmdstat_script") or {}).get("calls", 0))


@pytest.mark.filterwarnings("ignore:Call to '__init__' function with deprecated usage")
@pytest.mark.parametrize("replicas", [False, True], ids=["primaries", "reads-from-replicas"])
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_bind_of_many_functions_is_one_round_trip_per_node(
    cluster: Cluster,
    writes: collections.Counter[int],
    many: LuaModule,
    flavour: tuple[str, bool],
    replicas: bool,
) -> None:
    cluster.replicas_listed()  # known to the client, so that writes to them would be counted
    targets = cluster.nodes if replicas else cluster.primaries
    with cluster_client(flavour, cluster.port, read_from_replicas=replicas) as (client, run):
        assert {node.port for node in client.get_nodes()} == {node.port for node in cluster.nodes}
        run(client.execute_command("PING", target_nodes=client.get_nodes()))  # connected to every node
        writes.clear()
        loaded = run(luaimport.bind(client, many))
        counted = dict(writes)
    assert counted == {node.port: 1 for node in targets}
    assert loaded == {f"many.f{i}": getattr(many, f"f{i}").sha for i in range(FUNCTIONS)}
    for node in cluster.primaries:  # (asked first: Redis 6.2 counts SCRIPT EXISTS with SCRIPT LOAD)
        assert script_loads(node.client) == FUNCTIONS  # each script once per node: nothing was resent
    for node in targets:
        assert all(node.client.script_exists(*loaded.values()))


@pytest.mark.filterwarnings("ignore:Call to '__init__' function with deprecated usage")
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_a_deploy_is_one_round_trip_per_primary_and_never_reaches_replicas(
    cluster: Cluster, writes: collections.Counter[int], many: LuaModule, flavour: tuple[str, bool]
) -> None:
    """Replicas refuse FUNCTION LOAD and get the libraries by replication."""
    import lipkg.basic as basic

    if not has_functions(cluster.primaries[0].client):
        pytest.skip("Redis 6.2 has no Functions (test_functions.py checks the error it gives)")
    cluster.replicas_listed()
    with cluster_client(flavour, cluster.port, read_from_replicas=True) as (client, run):
        run(client.execute_command("PING", target_nodes=client.get_nodes()))
        writes.clear()
        deployed = run(luaimport.bind(client, many, basic, backend="functions"))
        counted = dict(writes)
    assert counted == {node.port: 1 for node in cluster.primaries}
    assert deployed["many.f7"] == many.f7.function_name
    assert deployed["lipkg.basic.factorial"] == basic.factorial.function_name


@pytest.mark.filterwarnings("ignore:Call to '__init__' function with deprecated usage")
@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_a_script_that_does_not_compile_fails_bind_at_its_lua_line(
    cluster: Cluster, flavour: tuple[str, bool]
) -> None:
    cluster.replicas_listed()
    broken = many_functions(FUNCTIONS, broken=FUNCTIONS // 2)
    with (
        cluster_client(flavour, cluster.port, read_from_replicas=True) as (client, run),
        pytest.raises(LuaSyntaxError) as info,
    ):
        run(luaimport.bind(client, broken))
    lineno = 2 * (FUNCTIONS // 2) + 2
    assert (info.value.filename, info.value.lineno) == ("many.lua", lineno)
    assert info.value.text == f"local a = = {FUNCTIONS // 2}"


def test_bind_on_a_cluster_with_a_node_down_raises_that_nodes_connection_error(
    server_binary: str, tmp_path: Path
) -> None:
    """Clients that have already talked to the node and clients that never have.

    redis-py's asyncio cluster pipeline, unable to connect to a node, retries
    with the commands' targets forgotten and fails with ``Too many targets for
    command``: bind reports the node's own error instead.
    """
    import lipkg.basic as basic

    cluster = Cluster.start(server_binary, tmp_path, replicas=0)
    try:
        with contextlib.ExitStack() as stack:
            used = [stack.enter_context(cluster_client(f, cluster.port)) for f in FLAVOURS]
            fresh = [stack.enter_context(cluster_client(f, cluster.port)) for f in FLAVOURS]
            for client, run in used:
                run(luaimport.bind(client, basic))
            down = cluster.primaries[1]
            down.process.send_signal(signal.SIGKILL)
            down.process.wait()
            for (client, run), flavour in zip(used + fresh, FLAVOURS + FLAVOURS, strict=True):
                library = redis if flavour[0] == "redis" else valkey
                with pytest.raises(library.exceptions.ConnectionError):
                    run(luaimport.bind(client, basic))
    finally:
        cluster.stop()


@pytest.mark.parametrize("flavour", FLAVOURS, ids=FLAVOUR_IDS)
def test_a_cold_cluster_pipeline_loads_its_scripts_in_one_round_trip_per_primary(
    cluster: Cluster, writes: collections.Counter[int], many: LuaModule, flavour: tuple[str, bool]
) -> None:
    """Per primary: one SCRIPT EXISTS, then one pipeline of the missing loads; then the pipeline itself.

    (redis-py 8.1's sync cluster pipeline also asks its default node ``COMMAND GETKEYS`` for each
    EVALSHA queued: round trips of redis-py's own, not counted here.)
    """
    functions = [getattr(many, f"f{i}") for i in range(100)]
    with cluster_client(flavour, cluster.port) as (client, run):
        run(client.execute_command("PING", target_nodes=client.get_nodes()))
        owner = client.get_node_from_key("{calls}").port
        asked = {node.port: -commands_asked(node.client) for node in cluster.primaries}
        writes.clear()
        pipe = client.pipeline()
        for function in functions:
            function(pipe, ["{calls}"], [])
        assert run(pipe.execute()) == list(range(100))
        counted = dict(writes)
    for node in cluster.primaries:
        asked[node.port] += commands_asked(node.client)
        assert all(node.client.script_exists(*(function.sha for function in functions)))
    ours = {port: count - asked[port] for port, count in counted.items()}
    assert ours == {node.port: 2 + (node.port == owner) for node in cluster.primaries}


def commands_asked(node: redis.Redis) -> int:
    """The COMMAND commands ``node`` ran (COMMAND GETKEYS among them)."""
    stats = node.info("commandstats")
    return sum(
        v["calls"] for k, v in stats.items() if k == "cmdstat_command" or k.startswith("cmdstat_command|")
    )


@pytest.mark.parametrize("flavour", [f for f in FLAVOURS if not f[1]], ids=["redis", "valkey"])
def test_a_bind_that_meets_a_dead_node_refreshes_the_cluster_clients_slot_map(
    server_binary: str, tmp_path: Path, flavour: tuple[str, bool]
) -> None:
    """A sync bind sends through each node's own client, which the cluster client does not watch:
    the node's failure is shown to the cluster client, so that the next bind goes to the new primary
    rather than to the dead node forever."""
    import lipkg.basic as basic

    cluster = Cluster.start(server_binary, tmp_path, replicas=1)
    try:
        with cluster_client(flavour, cluster.port) as (client, run):
            run(luaimport.bind(client, basic))  # the client's map: the primaries as they are now
            old = cluster.primaries[1]
            cluster.failover(old)  # the old primary is now a replica, which bind does not need
            old.process.send_signal(signal.SIGKILL)
            old.process.wait()
            library = redis if flavour[0] == "redis" else valkey
            with contextlib.suppress(library.exceptions.ConnectionError):
                run(luaimport.bind(client, basic))  # the stale map sends to the dead node once
            loaded = run(luaimport.bind(client, basic))
        assert loaded["lipkg.basic.factorial"] == basic.factorial.sha
        for node in cluster.primaries:
            assert node.client.script_exists(basic.factorial.sha) == [True]
    finally:
        cluster.stop()


@pytest.mark.parametrize("flavour", [f for f in FLAVOURS if not f[1]], ids=["redis", "valkey"])
def test_a_bind_that_fails_on_every_node_leaves_no_reference_cycle(
    cluster: Cluster, flavour: tuple[str, bool]
) -> None:
    """Each node's error for the same script is a reply with a traceback through the pipeline that
    got it; only one is raised, and the others must not keep the pipelines alive.

    Sync clients only: redis-py's asyncio cluster pipeline is a reference cycle of its own, with
    or without luaimport, and its commands hold their replies.
    """
    import gc

    broken = many_functions(3, broken=1)
    with cluster_client(flavour, cluster.port) as (client, run):
        run(luaimport.bind(client, many_functions(1)))  # connected, its own garbage collected below
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                with pytest.raises(LuaSyntaxError):
                    run(luaimport.bind(client, broken))
            leaked = [type(o).__name__ for o in gc.get_objects() if type(o).__name__ == "ResponseError"]
        finally:
            gc.enable()
    assert leaked == []
