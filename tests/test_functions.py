"""The Functions backend on real servers: deploy, FCALL, the heal after FUNCTION FLUSH, prune, persistence.

Every test runs on every server of the matrix.  Servers with Functions
(Redis 7+, Valkey) run them; Redis 6.2 skips them (``functions_server``),
and its own test checks the clear error it gives instead.  The behavioural
suite (``test_clients.py``) covers calls, CALLs, errors and signatures on
both backends through all sixteen kinds of client; this file covers what
only the Functions backend does.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import valkey
from _cluster import Cluster, _free_port, _wait
from _servers import has_functions
from _servers import library_names as libraries
from redis.cluster import RedisCluster
from redis.commands import READ_COMMANDS

import luaimport
from luaimport import LuaError, LuaNotLoadedError

pytestmark = pytest.mark.usefixtures("import_state")

KINDS_LUA = Path(__file__).parent / "fixtures" / "errs" / "kinds.lua"
FOREIGN = "#!lua name=foreign\nredis.register_function('foreign_f', function() return 'foreign' end)\n"
#: a library dressed as luaimport's: the right name pattern and marker, but not the hash
LOOKALIKE = (
    "#!lua name=ver__mod__0123456789abcdef\nlocal CALL = 'ver__mod__0123456789abcdef'\n"
    "-- luaimport library of module ver.mod\n"
    "redis.register_function{function_name = CALL .. '__f', callback = function() return 'look' end}\n"
)
V1 = "--@function f\nreturn 'v1'\n--@function only_in_v1\nreturn 1\n"
V2 = "--@function f\nreturn 'v2'\n"


def calls(client: Any, command: str) -> int:
    """How many times the server ran ``command`` (``function|load``, ``fcall``...) since its last reset."""
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


# -- deploy and call ------------------------------------------------------------------------------------


def test_bind_deploys_one_library_per_module_and_calls_use_fcall(functions_server: redis.Redis) -> None:
    import lipkg.basic as basic
    import lipkg.uses_single as uses

    client = functions_server
    deployed = luaimport.bind(client, basic, uses, backend="functions")
    assert deployed == {
        **{f"lipkg.basic.{name}": f"{basic.factorial.library.name}__{name}" for name in basic.__all__},
        "lipkg.uses_single.incr_twice": uses.incr_twice.function_name,
    }
    assert libraries(client) == sorted([basic.factorial.library.name, uses.incr_twice.library.name])
    client.config_resetstat()
    assert basic.factorial(client, [], [5]) == 120
    assert uses.incr_twice(client, ["n"], [2]) == 4  # a callee of another module travelled with its caller
    assert (calls(client, "fcall"), calls(client, "evalsha"), calls(client, "eval")) == (2, 0, 0)


def test_a_readonly_function_is_called_with_fcall_ro(functions_server: redis.Redis) -> None:
    import flagpkg.reads as reads

    client = functions_server
    luaimport.bind(client, reads, backend="functions")
    client.set("k", "v")
    client.config_resetstat()
    assert reads.get(client, ["k"]) == b"v"
    assert reads.plain(client, ["k"]) == b"flagged:v"
    assert (calls(client, "fcall_ro"), calls(client, "fcall")) == (1, 1)
    with pytest.raises(LuaError, match="Write commands are not allowed from read-only scripts") as info:
        reads.write_directly(client, ["k"])
    assert info.value.lineno == 17  # the write, in reads.lua
    assert client.get("k") == b"v"


def test_functions_survive_script_flush(functions_server: redis.Redis) -> None:
    import lipkg.basic as basic

    client = functions_server
    luaimport.bind(client, basic, backend="functions")
    client.script_flush()
    client.config_resetstat()
    assert basic.factorial(client, [], [4]) == 24
    assert calls(client, "fcall") == 1
    assert calls(client, "function|load") == calls(client, "script|load") == calls(client, "eval") == 0


def test_a_call_after_function_flush_redeploys_its_library_and_runs_once(
    functions_server: redis.Redis,
) -> None:
    import flagpkg.reads as reads
    import lipkg.single as single

    client = functions_server
    luaimport.bind(client, single, reads, backend="functions")
    client.function_flush()
    client.set("k", "v")
    client.config_resetstat()
    assert single(client, ["n"], [3]) == 3
    assert calls(client, "fcall") == 2  # the miss, then the retry in the redeploy's round trip
    assert calls(client, "function|load") == 1
    assert libraries(client) == [single.library.name]  # only the library that was called
    assert single(client, ["n"], [1]) == 4
    assert calls(client, "function|load") == 1
    client.config_resetstat()
    assert reads.get(client, ["k"]) == b"v"  # read-only: the miss as FCALL_RO, the retry as FCALL
    assert (calls(client, "fcall_ro"), calls(client, "fcall"), calls(client, "function|load")) == (1, 1, 1)


def test_a_reply_that_reads_like_a_missing_function_is_the_functions_own_and_runs_once(
    functions_server: redis.Redis,
) -> None:
    from fnpkg import replies

    client = functions_server
    luaimport.bind(client, replies, backend="functions")
    client.config_resetstat()
    with pytest.raises(redis.exceptions.ResponseError) as info:
        replies.liar(client, runs="runs")
    assert str(info.value) == "(a reply of the function, not a missing function) Function not found"
    assert client.get("runs") == b"1"
    assert calls(client, "function|load") == 0
    pipe = client.pipeline()
    replies.liar(pipe, runs="runs")
    (result,) = pipe.execute(raise_on_error=False)
    assert not isinstance(result, LuaNotLoadedError)
    assert client.get("runs") == b"2"


def test_prelude_state_does_not_leak_between_calls_on_either_backend(functions_server: redis.Redis) -> None:
    from fnpkg import state

    client = functions_server
    for backend in ("scripts", "functions"):
        luaimport.bind(client, state, backend=backend)  # type: ignore[arg-type]
        assert [state.count(client, key="a") for _ in range(3)] == [[1, 1]] * 3
        assert state.twice(client, key="a") == [[1, 1], [2, 2]]  # within one call, callees share it
    assert calls(client, "fcall") == 3
    assert calls(client, "fcall_ro") == 1


def test_functions_without_flags_take_the_stricter_defaults_of_flagged_scripts(
    functions_server: redis.Redis,
) -> None:
    """Out of memory, a function without flags is refused whole, where a script without them could read."""
    import flagpkg.reads as reads

    client = functions_server
    luaimport.bind(client, reads, backend="functions")
    client.set("k", "before")
    saved = {**client.config_get("maxmemory"), **client.config_get("maxmemory-policy")}
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            reads.plain(client, ["k"])  # no flags: refused before it runs, though it only reads
        assert reads.get(client, ["k"]) == b"before"  # --@readonly: no-writes
        assert reads.set_allow_oom(client, ["k"], ["written"]) == b"OK"  # --@flags allow-oom
        luaimport.bind(client, reads)  # the same function as a script, without a #!lua line
        assert reads.plain(client, ["k"]) == b"flagged:written"
    finally:
        client.config_set("maxmemory", saved["maxmemory"])
        client.config_set("maxmemory-policy", saved["maxmemory-policy"])


def test_bind_with_the_scripts_backend_switches_calls_back_to_evalsha(functions_server: redis.Redis) -> None:
    import lipkg.basic as basic

    client = functions_server
    luaimport.bind(client, basic, backend="functions")
    luaimport.bind(client, basic)
    client.config_resetstat()
    assert basic.factorial(client, [], [3]) == 6
    assert (calls(client, "evalsha"), calls(client, "fcall")) == (1, 0)


def test_other_clients_and_modules_not_bound_keep_the_scripts_backend(
    functions_server: redis.Redis, server_kwargs: dict[str, Any]
) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    client = functions_server
    luaimport.bind(client, basic, backend="functions")
    other = redis.Redis(**server_kwargs)
    try:
        client.config_resetstat()
        assert basic.factorial(other, [], [3]) == 6  # another client: another pool
        assert single(client, ["n"], [1]) == 1  # another module
        assert basic.factorial(client.pipeline(), [], [3]).execute() == [6]  # a pipeline of the client
    finally:
        other.close()
    assert calls(client, "fcall") == 1
    assert calls(client, "evalsha") == 2


def test_bind_refuses_an_unknown_backend(client: redis.Redis) -> None:
    import lipkg.basic as basic

    with pytest.raises(ValueError, match="backend must be 'scripts' or 'functions', not 'function'"):
        luaimport.bind(client, basic, backend="function")  # type: ignore[arg-type]


# -- pipelines and transactions -------------------------------------------------------------------------


@pytest.mark.parametrize("transaction", [False, True], ids=["pipeline", "transaction"])
def test_a_function_missing_when_the_pipeline_runs_is_reported_and_never_replayed(
    functions_server: redis.Redis, transaction: bool
) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    client = functions_server
    luaimport.bind(client, basic, single, backend="functions")
    pipe = client.pipeline(transaction=transaction)
    single(pipe, ["n"], [1])
    pipe.incr("plain")
    pipe.function_flush()
    single(pipe, ["n"], [10])
    basic.factorial(pipe, [], [3])
    pipe.incr("plain")
    client.config_resetstat()
    results = pipe.execute(raise_on_error=False)
    assert results[:3] == [1, 1, True]
    for result, function in zip(results[3:5], ["lipkg.single", "lipkg.basic.factorial"], strict=True):
        assert isinstance(result, LuaNotLoadedError)
        assert result.function == function
        assert "FUNCTION FLUSH" in str(result) and "not replayed" in str(result)
    assert results[5] == 2
    assert client.get("n") == b"1"
    assert calls(client, "function|load") == 0  # a pipeline never deploys
    with pytest.raises(LuaNotLoadedError):
        single(client.pipeline(transaction=transaction), ["n"], [1]).execute()
    assert single(client, ["n"], [1]) == 2  # a direct call redeploys


def test_a_pipeline_mixes_functions_and_scripts(functions_server: redis.Redis) -> None:
    import errs.entry as entry
    import lipkg.basic as basic
    import lipkg.single as single

    client = functions_server
    luaimport.bind(client, basic, entry, backend="functions")
    client.config_resetstat()
    pipe = client.pipeline(transaction=True)
    basic.factorial(pipe, [], [4])
    single(pipe, ["n"], [2])  # not bound: a script, loaded inside the pipeline
    entry.run(pipe, ["k"], ["explicit"])
    four, two, error = pipe.execute(raise_on_error=False)
    assert (four, two) == (24, 2)
    assert isinstance(error, LuaError)
    assert (error.filename, error.lineno, error.function) == (str(KINDS_LUA), 8, "errs.kinds.explicit")
    assert (calls(client, "fcall"), calls(client, "evalsha"), calls(client, "script|load")) == (2, 1, 1)


# -- persistence ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def own_server(binary: str, directory: Path, port: int, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """A server process of our own, on ``port``, keeping its data in ``directory``; stopped with SIGTERM."""
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--logfile",
            "log",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = redis.Redis(host="127.0.0.1", port=port)
    try:
        _wait(f"a server on {port}", probe.ping)
        yield process
    finally:
        probe.close()
        process.send_signal(signal.SIGTERM)
        process.wait(10)


PERSISTENCE = {
    "rdb": ["--save", "", "--appendonly", "no"],  # the test runs SAVE before the restart
    "aof": ["--save", "", "--appendonly", "yes", "--appendfsync", "always"],
}


@pytest.mark.parametrize("persistence", list(PERSISTENCE))
def test_after_a_restart_with_persistence_calls_run_with_no_reload(
    tmp_path: Path, server_binary: str, persistence: str
) -> None:
    import flagpkg.reads as reads
    import lipkg.basic as basic

    port = _free_port()
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        with own_server(server_binary, tmp_path, port, *PERSISTENCE[persistence]):
            if not has_functions(client):
                pytest.skip("Redis 6.2 has no Functions")
            luaimport.bind(client, basic, reads, backend="functions")
            client.set("k", "v")
            if persistence == "rdb":
                client.save()
        with own_server(server_binary, tmp_path, port, *PERSISTENCE[persistence]):
            client.connection_pool.disconnect()  # the same client, as an application keeps it
            assert basic.factorial(client, [], [6]) == 720
            assert reads.get(client, ["k"]) == b"v"
            stats = client.info("commandstats")
            assert "cmdstat_function|load" not in stats  # nothing reloaded: the libraries were on disk
            assert stats["cmdstat_fcall"]["calls"] == 1
            assert stats["cmdstat_fcall_ro"]["calls"] == 1
            assert libraries(client) == sorted([basic.factorial.library.name, reads.get.library.name])
    finally:
        client.close()


# -- two versions, prune --------------------------------------------------------------------------------


def test_two_versions_of_a_module_run_side_by_side_and_prune_removes_only_the_older(
    functions_server: redis.Redis,
) -> None:
    import lipkg.basic as basic

    client = functions_server
    client.function_load(FOREIGN)
    client.function_load(LOOKALIKE)
    v1, v2 = luaimport.loads(V1, "ver.mod"), luaimport.loads(V2, "ver.mod")
    luaimport.bind(client, v1, backend="functions")  # the old version, still served...
    luaimport.bind(client, v2, basic, backend="functions")  # ...while the new one is deployed
    assert v1.f.library.name != v2.f.library.name
    assert (v1.f(client), v2.f(client)) == (b"v1", b"v2")
    assert luaimport.prune(client, keep=[v2, basic]) == [v1.f.library.name]
    assert libraries(client) == sorted(
        ["foreign", "ver__mod__0123456789abcdef", v2.f.library.name, basic.factorial.library.name]
    )
    assert v2.f(client) == b"v2"
    assert client.fcall("foreign_f", 0) == b"foreign"
    assert luaimport.prune(client, keep=[v2, basic]) == []  # nothing left to prune
    assert luaimport.prune(client, keep=[]) == sorted([v2.f.library.name, basic.factorial.library.name])
    assert libraries(client) == ["foreign", "ver__mod__0123456789abcdef"]  # never touched


def test_prune_keeps_the_current_version_of_functions_given(functions_server: redis.Redis) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    client = functions_server
    luaimport.bind(client, basic, single, backend="functions")
    assert luaimport.prune(client, keep=[basic.factorial]) == [single.library.name]
    assert libraries(client) == [basic.factorial.library.name]
    with pytest.raises(TypeError, match="not a pipeline"):
        luaimport.prune(client.pipeline(), keep=[])


def test_a_reload_deploys_the_new_version_on_the_first_call_and_prune_drops_the_old(
    functions_server: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = functions_server
    (tmp_path / "reloaded_fn.lua").write_text("--@function f\nreturn 'old'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import reloaded_fn  # type: ignore[import-not-found]

    luaimport.bind(client, reloaded_fn, backend="functions")
    old = reloaded_fn.f.library.name
    assert reloaded_fn.f(client) == b"old"
    (tmp_path / "reloaded_fn.lua").write_text("--@function f\nreturn 'new'\n")
    importlib.reload(reloaded_fn)
    client.config_resetstat()
    assert reloaded_fn.f(client) == b"new"  # a new name: missing, so deployed by the call
    assert calls(client, "function|load") == 1
    assert libraries(client) == sorted([old, reloaded_fn.f.library.name])
    assert luaimport.prune(client, keep=[reloaded_fn]) == [old]


# -- asyncio, valkey-py, fakeredis ----------------------------------------------------------------------


def test_asyncio_bind_call_pipeline_heal_and_prune(
    functions_server: redis.Redis, server_kwargs: dict[str, Any]
) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    async def scenario() -> tuple[Any, ...]:
        client = redis.asyncio.Redis(**server_kwargs)
        try:
            deployed = await luaimport.bind(client, basic, single, backend="functions")
            direct = await basic.factorial(client, [], [5])
            await client.function_flush()
            healed = await single(client, ["n"], [2])
            async with client.pipeline(transaction=True) as pipe:
                single(pipe, ["n"], [1])
                basic.factorial(pipe, [], [3])
                piped = await pipe.execute(raise_on_error=False)
            pruned = await luaimport.prune(client, keep=[single])
            return deployed, direct, healed, piped, pruned
        finally:
            await client.aclose()

    functions_server.config_resetstat()
    deployed, direct, healed, piped, pruned = asyncio.run(scenario())
    assert deployed["lipkg.single"] == single.function_name
    assert (direct, healed) == (120, 2)
    assert piped[0] == 3
    assert isinstance(piped[1], LuaNotLoadedError)  # basic was flushed and never called directly since
    assert pruned == []  # only single's library is left, and it is kept
    assert calls(functions_server, "function|load") == 3  # bind (two libraries, one round trip), the heal
    assert calls(functions_server, "evalsha") == 0


def test_valkey_py_bind_call_and_prune(functions_server: redis.Redis, server_kwargs: dict[str, Any]) -> None:
    import errs.entry as entry

    client = valkey.Valkey(**server_kwargs)
    try:
        luaimport.bind(client, entry, backend="functions")
        with pytest.raises(LuaError) as info:
            entry.run(client, ["k"], ["index_nil"])
        pruned = luaimport.prune(client, keep=[])
    finally:
        client.close()
    assert isinstance(info.value, valkey.exceptions.ResponseError)
    assert (info.value.filename, info.value.lineno) == (str(KINDS_LUA), 12)
    assert pruned == [entry.run.library.name]


def test_fakeredis_runs_the_functions_backend(import_state: Path) -> None:
    """fakeredis (2.20+, with lupa) has FUNCTION LOAD/LIST/DELETE/FLUSH and FCALL: all of it works there."""
    import errs.entry as entry
    import flagpkg.reads as reads
    import lipkg.basic as basic

    fake = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    luaimport.bind(fake, basic, entry, reads, backend="functions")
    assert basic.call_return(fake, [], [4]) == [1, 2, 3, [b"4"]]
    fake.set("k", "v")
    assert reads.get(fake, ["k"]) == b"v"  # FCALL_RO, and flags, which its scripts lack
    with pytest.raises(LuaError) as info:
        entry.run(fake, ["k"], ["index_nil"])
    assert (info.value.filename, info.value.lineno) == (str(KINDS_LUA), 12)
    fake.function_flush()
    assert basic.factorial(fake, [], [5]) == 120  # redeployed
    pipe = fake.pipeline()
    basic.factorial(pipe, [], [3])
    entry.run(pipe, ["k"], ["explicit"])
    three, missing = pipe.execute(raise_on_error=False)
    assert (three, type(missing).__name__) == (6, "LuaNotLoadedError")
    fake.function_load(FOREIGN)
    assert luaimport.prune(fake, keep=[]) == [basic.factorial.library.name]
    assert libraries(fake) == ["foreign"]


def test_fakeredis_differences_on_the_functions_backend() -> None:
    """In fakeredis ``error({err=...})`` carries no position: it keeps redis-py's class."""
    import errs.entry as entry

    fake = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    luaimport.bind(fake, entry, backend="functions")
    with pytest.raises(redis.exceptions.ResponseError) as info:
        entry.run(fake, ["k"], ["custom_code"])
    assert not isinstance(info.value, LuaError)


# -- Redis 6.2 ------------------------------------------------------------------------------------------


def test_bind_and_prune_work_or_say_clearly_that_the_server_has_no_functions(client: redis.Redis) -> None:
    import lipkg.basic as basic

    if has_functions(client):
        client.function_flush()
        deployed = luaimport.bind(client, basic, backend="functions")
        assert deployed["lipkg.basic.factorial"] == basic.factorial.function_name
        assert luaimport.prune(client, keep=[basic]) == []
        assert basic.factorial(client, [], [3]) == 6  # through FCALL
        luaimport.bind(client, basic)  # back to scripts on this client
    else:
        for attempt in (
            lambda: luaimport.bind(client, basic, backend="functions"),
            lambda: luaimport.prune(client, keep=[basic]),
        ):
            with pytest.raises(
                LuaError, match=r"the Functions backend needs Redis 7\+ or Valkey 7.2\+"
            ) as info:
                attempt()
            assert "unknown command" in info.value.server_message
    client.config_resetstat()
    assert basic.factorial(client, [], [3]) == 6  # a script, as recorded last (or never changed)
    assert "cmdstat_fcall" not in client.info("commandstats")


def test_bind_on_a_cluster_works_or_gives_the_same_error(cluster: Cluster) -> None:
    import lipkg.basic as basic

    rc = RedisCluster(host="127.0.0.1", port=cluster.port)
    try:
        if has_functions(cluster.primaries[0].client):
            assert luaimport.bind(rc, basic, backend="functions")["lipkg.basic.factorial"] == (
                basic.factorial.function_name
            )
            assert luaimport.prune(rc, keep=[]) == [basic.factorial.library.name]
        else:
            with pytest.raises(LuaError, match="needs Redis 7"):
                luaimport.bind(rc, basic, backend="functions")
    finally:
        rc.close()


# -- Redis Cluster --------------------------------------------------------------------------------------


@pytest.fixture
def functions_cluster(cluster: Cluster) -> Cluster:
    if not has_functions(cluster.primaries[0].client):
        pytest.skip("Redis 6.2 has no Functions")
    return cluster


@pytest.fixture
def rc(functions_cluster: Cluster) -> Iterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=functions_cluster.port)
    yield client
    client.close()


def node_calls(nodes: list[Any], command: str) -> int:
    return sum(calls(node.client, command) for node in nodes)


#: keys on every primary, one hash tag each
CLUSTER_KEYS = [f"{{f{i}}}k" for i in range(30)]


def test_bind_deploys_on_every_primary_and_replication_brings_it_to_every_replica(
    functions_cluster: Cluster, rc: RedisCluster
) -> None:
    import lipkg.basic as basic

    luaimport.bind(rc, basic, backend="functions")
    for node in functions_cluster.primaries:
        assert libraries(node.client) == [basic.factorial.library.name]
        assert calls(node.client, "function|load") == 1
        assert node.client.wait(1, 5000) == 1
    for node in functions_cluster.replicas:
        assert libraries(node.client) == [basic.factorial.library.name]


def test_readonly_calls_run_on_replicas(functions_cluster: Cluster) -> None:
    from fnpkg import replies

    functions_cluster.replicas_listed()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Call to '__init__' function with deprecated usage")
        reader = RedisCluster(host="127.0.0.1", port=functions_cluster.port, read_from_replicas=True)
    try:
        for key in CLUSTER_KEYS:
            reader.set(key, key)
        luaimport.bind(reader, replies, backend="functions")  # primaries only: replicas refuse FUNCTION LOAD
        for node in functions_cluster.primaries:
            assert node.client.wait(1, 5000) == 1
        for node in functions_cluster.nodes:
            node.client.config_resetstat()
        assert [replies.get(reader, key=key) for key in CLUSTER_KEYS * 2] == [
            k.encode() for k in CLUSTER_KEYS * 2
        ]
    finally:
        reader.close()
    if "FCALL_RO" in READ_COMMANDS:
        assert node_calls(functions_cluster.replicas, "fcall_ro") > 0
    else:  # redis-py before 7.1 does not count FCALL_RO as a read: it goes to the primaries
        assert node_calls(functions_cluster.replicas, "fcall_ro") == 0
    assert node_calls(functions_cluster.nodes, "fcall_ro") == 2 * len(CLUSTER_KEYS)
    assert node_calls(functions_cluster.nodes, "function|load") == 0


def test_a_primary_that_lost_its_functions_is_redeployed_by_the_first_call_there(
    functions_cluster: Cluster, rc: RedisCluster
) -> None:
    import lipkg.single as single

    luaimport.bind(rc, single, backend="functions")
    flushed = functions_cluster.primaries[0]
    key = next(k for k in CLUSTER_KEYS if rc.get_node_from_key(k).port == flushed.port)
    flushed.client.function_flush()
    for node in functions_cluster.nodes:
        node.client.config_resetstat()
    assert single(rc, [key], [5]) == 5
    assert calls(flushed.client, "fcall") == 2  # the miss, then the retry
    for node in functions_cluster.primaries:  # the redeploy went to every primary
        assert calls(node.client, "function|load") == 1
    assert libraries(flushed.client) == [single.library.name]


def test_a_cluster_pipeline_runs_fcall_and_reports_a_missing_function_in_its_place(
    functions_cluster: Cluster, rc: RedisCluster
) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    luaimport.bind(rc, basic, single, backend="functions")
    for node in functions_cluster.nodes:
        node.client.config_resetstat()
    pipe = rc.pipeline()
    for i, key in enumerate(CLUSTER_KEYS):
        single(pipe, [key], [i])
    basic.factorial(pipe, [], [4])  # no keys: any primary
    assert pipe.execute() == [*range(len(CLUSTER_KEYS)), 24]
    assert node_calls(functions_cluster.primaries, "fcall") == len(CLUSTER_KEYS) + 1
    assert node_calls(functions_cluster.primaries, "evalsha") == 0
    assert node_calls(functions_cluster.primaries, "script|exists") == 0  # nothing asked first
    flushed = functions_cluster.primaries[1]
    flushed.client.function_flush()
    pipe = rc.pipeline()
    for key in CLUSTER_KEYS:
        single(pipe, [key], [100])
    results = pipe.execute(raise_on_error=False)
    on_flushed = [rc.get_node_from_key(key).port == flushed.port for key in CLUSTER_KEYS]
    assert any(on_flushed) and not all(on_flushed)
    for result, missing, i in zip(results, on_flushed, range(len(CLUSTER_KEYS)), strict=True):
        assert isinstance(result, LuaNotLoadedError) if missing else result == i + 100


def test_prune_deletes_on_every_primary_even_where_a_library_is_already_gone(
    functions_cluster: Cluster, rc: RedisCluster
) -> None:
    v1, v2 = luaimport.loads(V1, "ver.mod"), luaimport.loads(V2, "ver.mod")
    luaimport.bind(rc, v1, v2, backend="functions")
    for node in functions_cluster.primaries:
        node.client.function_load(FOREIGN)
    functions_cluster.primaries[0].client.function_delete(v1.f.library.name)
    assert luaimport.prune(rc, keep=[v2]) == [v1.f.library.name]
    for node in functions_cluster.primaries:
        assert libraries(node.client) == sorted(["foreign", v2.f.library.name])


def test_asyncio_cluster_bind_before_first_use_calls_pipelines_and_prune(functions_cluster: Cluster) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    async def scenario() -> tuple[Any, ...]:
        client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=functions_cluster.port)
        try:
            await luaimport.bind(client, basic, single, backend="functions")  # before it knows its nodes
            direct = [await single(client, [key], [1]) for key in CLUSTER_KEYS[:6]]
            pipe = client.pipeline()
            basic.factorial(pipe, [], [3])
            single(pipe, [CLUSTER_KEYS[0]], [1])
            piped = await pipe.execute()
            pruned = await luaimport.prune(client, keep=[single])
            return direct, piped, pruned
        finally:
            await client.aclose()

    direct, piped, pruned = asyncio.run(scenario())
    assert direct == [1] * 6
    assert piped == [6, 2]
    assert pruned == [basic.factorial.library.name]
    assert node_calls(functions_cluster.primaries, "fcall") == 8
    for node in functions_cluster.primaries:
        assert libraries(node.client) == [single.library.name]
