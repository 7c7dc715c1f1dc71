"""Script flags: ``--@readonly`` and ``--@flags`` become a ``#!lua`` first line; read-only calls use ``*_RO``.

Every test here runs on every server of the matrix and asserts what that
server must do: servers with script flags (Redis 7+, Valkey) run flagged
functions, servers without them (Redis 6.2, fakeredis) refuse them with a
:class:`LuaError` at the line of the directive that asked for the flags.
"""

from __future__ import annotations

import asyncio
import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from _cluster import Cluster
from _servers import flags_supported
from redis.cluster import RedisCluster

import luaimport
from luaimport import LuaError, LuaFunction

pytestmark = pytest.mark.usefixtures("import_state")

FLAGPKG = Path(__file__).parent / "fixtures" / "flagpkg"
READS_LUA = FLAGPKG / "reads.lua"
WHOLE_LUA = FLAGPKG / "whole.lua"
READS_LINES = READS_LUA.read_text().splitlines()
UNSUPPORTED = "which this server does not support: they need Redis 7+ or Valkey 7.2+"
WRITE_REFUSED = "Write commands are not allowed from read-only scripts"
OOM = "command not allowed when used memory > 'maxmemory'."


def line(text: str, function: str | None = None) -> int:
    """The line of reads.lua that reads exactly ``text``: the only one, or the first in ``function``."""
    start = line(f"--@function {function}") if function else 0
    found = [i for i, source in enumerate(READS_LINES, 1) if source == text and i > start]
    assert found and (function or len(found) == 1)
    return found[0]


def directive_line(function: str) -> int:
    """The line right after ``--@function function``: its first flags directive in reads.lua."""
    number = line(f"--@function {function}") + 1
    assert READS_LINES[number - 1].startswith(("--@readonly", "--@flags"))
    return number


def assert_unsupported(error: BaseException, function: str) -> None:
    """The clear error of a server without script flags, at ``function``'s flags directive."""
    assert isinstance(error, LuaError), repr(error)
    assert (error.filename, error.lineno) == (str(READS_LUA), directive_line(function))
    assert error.function == f"flagpkg.reads.{function}"
    assert UNSUPPORTED in str(error)


def calls(client: Any, command: str) -> int:
    """How many times the server ran ``command`` ('script|load': Redis 6.2 counts only 'script')."""
    stats = client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}") or stats.get(f"cmdstat_{command.split('|')[0]}", {})
    return int(entry.get("calls", 0))


def script_lines(fn: LuaFunction) -> list[str]:
    return fn.script.split("\n")


# -- the linked script ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "shebang"),
    [
        ("get", "#!lua flags=no-writes"),
        ("set_allow_oom", "#!lua flags=allow-oom"),
        ("set_bare_flags", "#!lua"),
        ("many_flags", "#!lua flags=allow-oom,allow-stale,no-writes"),
        ("readonly_and_flags", "#!lua flags=allow-cross-slot-keys,allow-stale,no-writes"),
    ],
)
def test_flags_directives_write_the_sorted_shebang_as_line_one(function: str, shebang: str) -> None:
    import flagpkg.reads as reads

    fn = getattr(reads, function)
    assert script_lines(fn)[0] == shebang
    assert script_lines(fn)[1].startswith("local CALL = {[0] = function(reply)")
    assert fn.script.count("#!lua") == 1


def test_a_function_without_flag_directives_has_no_shebang() -> None:
    import flagpkg.reads as reads

    for fn in (reads.plain, reads.setter):
        assert fn.script.startswith("local CALL = {[0] = function(reply)")
        assert "#!" not in fn.script
        assert fn.linked.flags is None
        assert not fn.linked.readonly


def test_only_the_entry_functions_flags_reach_the_shebang() -> None:
    import flagpkg.reads as reads

    assert "--@readonly" in reads.plain_calls_readonly.script  # the read-only callee is linked in
    assert not reads.plain_calls_readonly.script.startswith("#!")
    assert not reads.plain_calls_readonly.linked.readonly
    assert script_lines(reads.oom_entry_calls_readonly)[0] == "#!lua flags=allow-oom"
    assert not reads.oom_entry_calls_readonly.linked.readonly
    assert script_lines(reads.write_through_call)[0] == "#!lua flags=no-writes"  # unflagged callee
    assert reads.write_through_call.linked.readonly


def test_readonly_flags_the_linked_script_readonly_and_other_flags_do_not() -> None:
    import flagpkg.reads as reads

    assert reads.get.linked.flags == ("no-writes",)
    assert reads.get.linked.readonly
    assert reads.many_flags.linked.readonly  # no-writes given through --@flags
    assert reads.set_allow_oom.linked.flags == ("allow-oom",)
    assert not reads.set_allow_oom.linked.readonly
    assert reads.set_bare_flags.linked.flags == ()
    assert not reads.set_bare_flags.linked.readonly


def test_the_sha_covers_the_shebang() -> None:
    import flagpkg.reads as reads

    assert reads.get.sha == hashlib.sha1(reads.get.script.encode()).hexdigest()
    assert reads.get.script.startswith("#!lua flags=no-writes\n")
    assert reads.get.sha != reads.many_flags.sha


def test_the_shebang_is_the_only_line_a_flag_directive_adds() -> None:
    import flagpkg.reads as reads

    # the same file with the directive turned into a comment, so that every line keeps its number
    unflagged = luaimport.loads(
        READS_LUA.read_text().replace("--@function get\n--@readonly\n", "--@function get\n-- readonly\n"),
        "unflagged_reads",
        str(READS_LUA),
    )
    assert unflagged.get.script.startswith("local CALL")
    flagged = reads.get.script.removeprefix("#!lua flags=no-writes\n")
    assert flagged.replace("--@readonly", "-- readonly") == unflagged.get.script
    assert reads.get.sha != unflagged.get.sha


@pytest.mark.parametrize("function", ["get", "many_flags", "readonly_and_flags", "set_bare_flags"])
def test_the_shebang_maps_to_the_directive_line(function: str) -> None:
    import flagpkg.reads as reads

    origin = getattr(reads, function).line_map.lookup(1)
    assert origin is not None
    assert (origin.filename, origin.lineno) == (str(READS_LUA), directive_line(function))
    assert origin.function == f"flagpkg.reads.{function}"


@pytest.mark.parametrize("function", ["get", "fail_here", "write_directly", "plain_calls_readonly"])
def test_every_user_line_of_a_flagged_script_maps_to_its_own_source_line(function: str) -> None:
    import flagpkg.reads as reads

    fn = getattr(reads, function)
    mapped = 0
    for number, text in enumerate(script_lines(fn), 1):
        origin = fn.line_map.lookup(number)
        if origin is None or origin.generated:
            continue
        assert origin.filename == str(READS_LUA)
        if "CALL." not in origin.source_line:  # CALL references are the only rewritten text
            assert text == origin.source_line == READS_LINES[origin.lineno - 1]
        mapped += 1
    assert mapped >= 5  # the prelude and the body(s)


def test_a_marker_less_module_reads_readonly_from_its_leading_comments() -> None:
    import flagpkg.whole as whole

    assert whole.__doc__ == "A marker-less module that only reads."
    lines = whole.script.split("\n")
    assert lines[0] == "#!lua flags=no-writes"
    shebang = whole.line_map.lookup(1)
    assert shebang is not None
    assert (shebang.filename, shebang.lineno) == (str(WHOLE_LUA), 2)
    body = whole.line_map.lookup(lines.index("return redis.call('GET', KEYS[1])") + 1)
    assert body is not None
    assert (body.filename, body.lineno) == (str(WHOLE_LUA), 3)


def test_an_error_at_a_user_line_of_a_readonly_function_is_located_on_the_server(
    client: redis.Redis,
) -> None:
    import flagpkg.reads as reads

    client.set("k", "v")
    with pytest.raises(LuaError) as info:
        reads.fail_here(client, ["k"])
    if flags_supported(client):
        where = line("error('failing on purpose after reading ' .. tostring(seen))")
        assert (info.value.filename, info.value.lineno) == (str(READS_LUA), where)
        assert info.value.function == "flagpkg.reads.fail_here"
        assert "failing on purpose after reading v" in str(info.value)
    else:
        assert_unsupported(info.value, "fail_here")


# -- read-only calls run as EVALSHA_RO --------------------------------------------------------------


def test_a_readonly_function_is_called_with_evalsha_ro(client: redis.Redis) -> None:
    import flagpkg.reads as reads

    client.set("k", "v")
    if flags_supported(client):
        luaimport.bind(client, reads.get)
        client.config_resetstat()
        assert [reads.get(client, ["k"]) for _ in range(3)] == [b"v"] * 3
        assert calls(client, "evalsha_ro") == 3
        assert calls(client, "evalsha") == calls(client, "eval_ro") == calls(client, "eval") == 0
    else:
        client.config_resetstat()
        with pytest.raises(LuaError) as info:
            reads.get(client, ["k"])
        assert_unsupported(info.value, "get")
        assert calls(client, "evalsha") == calls(client, "eval") == 0  # nothing ran


def test_a_readonly_function_heals_after_script_flush_with_eval_ro(client: redis.Redis) -> None:
    import flagpkg.reads as reads

    client.set("k", "v")
    if flags_supported(client):
        assert reads.get(client, ["k"]) == b"v"
        client.script_flush()
        client.config_resetstat()
        assert reads.get(client, ["k"]) == b"v"
        assert calls(client, "evalsha_ro") == 1  # the miss
        assert calls(client, "eval_ro") == 1  # the script, run by its text
        assert calls(client, "script|load") == 1
        assert calls(client, "evalsha") == calls(client, "eval") == 0
        assert client.script_exists(reads.get.sha) == [True]
    else:
        with pytest.raises(LuaError) as info:
            reads.get(client, ["k"])
        assert_unsupported(info.value, "get")


def test_a_function_with_other_flags_is_called_with_evalsha(client: redis.Redis) -> None:
    import flagpkg.reads as reads

    if flags_supported(client):
        luaimport.bind(client, reads.set_allow_oom)
        client.config_resetstat()
        assert reads.set_allow_oom(client, ["k"], ["v"]) == b"OK"
        assert calls(client, "evalsha") == 1
        assert calls(client, "evalsha_ro") == 0
        assert client.get("k") == b"v"
    else:
        with pytest.raises(LuaError) as info:
            reads.set_allow_oom(client, ["k"], ["v"])
        assert_unsupported(info.value, "set_allow_oom")
        assert client.get("k") is None


# -- writes in read-only functions ------------------------------------------------------------------


def test_a_write_in_a_readonly_function_fails_at_the_line_of_the_write(client: redis.Redis) -> None:
    import flagpkg.reads as reads

    client.set("k", "before")
    with pytest.raises(LuaError) as info:
        reads.write_directly(client, ["k"])
    if flags_supported(client):
        where = line("redis.call('SET', KEYS[1], 'written by a read-only function')")
        assert (info.value.filename, info.value.lineno) == (str(READS_LUA), where)
        assert info.value.function == "flagpkg.reads.write_directly"
        assert WRITE_REFUSED in str(info.value)
        assert WRITE_REFUSED in info.value.server_message
    else:
        assert_unsupported(info.value, "write_directly")
    assert client.get("k") == b"before"


def test_a_write_in_a_callee_of_a_readonly_function_fails_at_the_callees_line(client: redis.Redis) -> None:
    import flagpkg.reads as reads

    client.set("k", "before")
    with pytest.raises(LuaError) as info:
        reads.write_through_call(client, ["k"], ["after"])
    if flags_supported(client):
        where = line("return redis.call('SET', KEYS[1], ARGV[1])", "setter")
        assert (info.value.filename, info.value.lineno) == (str(READS_LUA), where)
        assert info.value.function == "flagpkg.reads.setter"
        assert WRITE_REFUSED in str(info.value)
    else:
        assert_unsupported(info.value, "write_through_call")
    assert client.get("k") == b"before"


def test_an_unflagged_entry_calling_a_readonly_callee_runs_as_evalsha_everywhere(
    client: redis.Redis,
) -> None:
    import flagpkg.reads as reads

    client.set("k", "v")
    client.config_resetstat()
    assert reads.plain_calls_readonly(client, ["k"]) == b"v"
    assert calls(client, "evalsha") == 1
    assert calls(client, "evalsha_ro") == 0


# -- pipelines and transactions ---------------------------------------------------------------------


@pytest.mark.parametrize("transaction", [False, True], ids=["pipeline", "transaction"])
def test_a_readonly_function_is_queued_as_evalsha_ro_in_a_pipeline(
    client: redis.Redis, transaction: bool
) -> None:
    import flagpkg.reads as reads

    client.set("k", "v")
    client.config_resetstat()
    pipe = client.pipeline(transaction=transaction)
    reads.get(pipe, ["k"])
    reads.plain(pipe, ["k"])
    reads.get(pipe, ["missing"])
    if flags_supported(client):
        assert pipe.execute() == [b"v", b"flagged:v", None]
        assert calls(client, "evalsha_ro") == 2
        assert calls(client, "evalsha") == 1  # the unflagged function
        assert calls(client, "exec") == (1 if transaction else 0)
    elif transaction:  # EVALSHA_RO is an unknown command: the server discards the whole transaction
        with pytest.raises(LuaError) as info:
            pipe.execute()
        assert_unsupported(info.value, "get")
        assert calls(client, "evalsha") == 0
        assert len(pipe) == 0
    else:  # the read-only calls fail in their places, with the clear error; the rest runs
        results = pipe.execute(raise_on_error=False)
        assert_unsupported(results[0], "get")
        assert results[1] == b"flagged:v"
        assert_unsupported(results[2], "get")
        assert calls(client, "evalsha") == 1
        assert len(pipe) == 0


@pytest.mark.parametrize("transaction", [False, True], ids=["pipeline", "transaction"])
def test_a_readonly_function_runs_as_evalsha_ro_through_the_asyncio_client(
    client: redis.Redis, server_kwargs: dict[str, Any], transaction: bool
) -> None:
    import flagpkg.reads as reads

    async def scenario() -> tuple[object, list[Any]]:
        aclient = redis.asyncio.Redis(**server_kwargs)
        try:
            direct = await reads.get(aclient, ["k"])
            async with aclient.pipeline(transaction=transaction) as pipe:
                reads.get(pipe, ["k"])
                reads.plain(pipe, ["k"])
                return direct, await pipe.execute()
        finally:
            await aclient.aclose()

    client.set("k", "v")
    client.config_resetstat()
    if flags_supported(client):
        assert asyncio.run(scenario()) == (b"v", [b"v", b"flagged:v"])
        assert calls(client, "evalsha_ro") == 2  # the direct call's miss, and the pipelined call
        assert calls(client, "eval_ro") == 1  # the direct call's heal
        assert calls(client, "evalsha") == 1
    else:
        with pytest.raises(LuaError) as info:
            asyncio.run(scenario())
        assert_unsupported(info.value, "get")


# -- out of memory ----------------------------------------------------------------------------------


@pytest.fixture
def out_of_memory(client: redis.Redis) -> Iterator[redis.Redis]:
    """The server refusing writes for lack of memory (maxmemory 1, noeviction); restored after."""
    saved = {**client.config_get("maxmemory"), **client.config_get("maxmemory-policy")}
    client.set("k", "before")
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("probe", "x")  # the server is out of memory indeed
        yield client
    finally:
        client.config_set("maxmemory", saved["maxmemory"])
        client.config_set("maxmemory-policy", saved["maxmemory-policy"])


def test_a_readonly_function_runs_out_of_memory(out_of_memory: redis.Redis) -> None:
    import flagpkg.reads as reads

    client = out_of_memory
    if flags_supported(client):
        assert reads.get(client, ["k"]) == b"before"
    else:
        with pytest.raises(LuaError) as info:
            reads.get(client, ["k"])
        assert_unsupported(info.value, "get")


def test_an_allow_oom_function_writes_out_of_memory(out_of_memory: redis.Redis) -> None:
    import flagpkg.reads as reads

    client = out_of_memory
    if flags_supported(client):
        assert reads.set_allow_oom(client, ["k"], ["written anyway"]) == b"OK"
        assert client.get("k") == b"written anyway"
    else:
        with pytest.raises(LuaError) as info:
            reads.set_allow_oom(client, ["k"], ["written anyway"])
        assert_unsupported(info.value, "set_allow_oom")
        assert client.get("k") == b"before"


def test_a_writer_with_a_bare_shebang_is_refused_out_of_memory_with_the_servers_error(
    out_of_memory: redis.Redis,
) -> None:
    import flagpkg.reads as reads

    client = out_of_memory
    with pytest.raises(redis.exceptions.ResponseError) as info:
        reads.set_bare_flags(client, ["k"], ["refused"])  # a miss: refused as the heal's EVAL
    if flags_supported(client):
        # refused before it runs, by the server: no script position, so redis-py's own class and text
        assert type(info.value) is redis.exceptions.OutOfMemoryError
        assert str(info.value) == OOM
        assert client.script_exists(reads.set_bare_flags.sha) == [True]  # the heal's SCRIPT LOAD ran
        with pytest.raises(redis.exceptions.OutOfMemoryError) as again:
            reads.set_bare_flags(client, ["k"], ["refused"])  # loaded: refused as the EVALSHA
        assert type(again.value) is redis.exceptions.OutOfMemoryError
        assert str(again.value) == OOM
    else:
        assert_unsupported(info.value, "set_bare_flags")
    assert client.get("k") == b"before"


# -- the reply guard --------------------------------------------------------------------------------


def test_a_readonly_function_replying_like_a_cache_miss_is_reported_as_its_reply_and_runs_once(
    client: redis.Redis,
) -> None:
    import flagpkg.reads as reads

    if flags_supported(client):
        luaimport.bind(client, reads.liar)
        client.config_resetstat()
        with pytest.raises(redis.exceptions.NoScriptError) as info:
            reads.liar(client)
        assert type(info.value) is redis.exceptions.NoScriptError
        assert str(info.value) == "(a reply of the script, not a cache miss) NOSCRIPT No matching script."
        assert calls(client, "evalsha_ro") == 1
        assert calls(client, "eval_ro") == calls(client, "script|load") == 0  # not taken for a miss
    else:
        with pytest.raises(LuaError) as info:
            reads.liar(client)
        assert_unsupported(info.value, "liar")


# -- servers without script flags -------------------------------------------------------------------


def test_bind_of_a_flagged_function_loads_it_or_fails_at_its_directive(client: redis.Redis) -> None:
    import flagpkg.reads as reads

    if flags_supported(client):
        assert luaimport.bind(client, reads.set_bare_flags, reads.get) == {
            "flagpkg.reads.set_bare_flags": reads.set_bare_flags.sha,
            "flagpkg.reads.get": reads.get.sha,
        }
        assert client.script_exists(reads.set_bare_flags.sha, reads.get.sha) == [True, True]
    else:
        with pytest.raises(LuaError) as info:
            luaimport.bind(client, reads.set_bare_flags)
        assert_unsupported(info.value, "set_bare_flags")
        assert "Error compiling script" in info.value.server_message  # the #!lua line is not Lua there


def test_a_flagged_writer_runs_or_fails_at_its_directive(client: redis.Redis) -> None:
    import flagpkg.reads as reads

    if flags_supported(client):
        assert reads.set_bare_flags(client, ["k"], ["v"]) == b"OK"
        assert client.get("k") == b"v"
    else:  # EVALSHA misses, then the SCRIPT LOAD and the EVAL both fail to compile the #!lua line
        with pytest.raises(LuaError) as info:
            reads.set_bare_flags(client, ["k"], ["v"])
        assert_unsupported(info.value, "set_bare_flags")
        assert "user_script:1: unexpected symbol near '#'" in info.value.server_message
        assert client.get("k") is None


def test_a_readonly_call_runs_or_fails_at_its_directive(client: redis.Redis) -> None:
    import flagpkg.reads as reads

    client.set("k", "v")
    if flags_supported(client):
        assert reads.readonly_and_flags(client, ["k"]) == 1
    else:  # EVALSHA_RO is an unknown command there
        with pytest.raises(LuaError) as info:
            reads.readonly_and_flags(client, ["k"])
        assert_unsupported(info.value, "readonly_and_flags")
        assert "unknown command" in info.value.server_message
        assert "EVALSHA_RO" in info.value.server_message
        assert "allow-cross-slot-keys, allow-stale, no-writes" in str(info.value)


def test_unflagged_functions_of_a_module_with_flags_run_on_every_server(client: redis.Redis) -> None:
    import flagpkg.reads as reads

    client.set("k", "v")
    assert reads.plain(client, ["k"]) == b"flagged:v"
    assert reads.setter(client, ["k"], ["w"]) == b"OK"
    assert reads.plain_calls_readonly(client, ["k"]) == b"w"
    assert luaimport.bind(client, reads.plain, reads.setter) == {
        "flagpkg.reads.plain": reads.plain.sha,
        "flagpkg.reads.setter": reads.setter.sha,
    }


# -- fakeredis (no script flags, no *_RO commands) --------------------------------------------------


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    client.set("k", "v")
    return client


def test_fakeredis_refuses_a_readonly_call_at_its_directive(fake: fakeredis.FakeRedis) -> None:
    import flagpkg.reads as reads

    with pytest.raises(LuaError) as info:
        reads.get(fake, ["k"])
    assert_unsupported(info.value, "get")
    assert "unknown command 'evalsha_ro'" in info.value.server_message


def test_fakeredis_refuses_a_flagged_writer_at_its_directive(fake: fakeredis.FakeRedis) -> None:
    import flagpkg.reads as reads

    with pytest.raises(LuaError) as info:
        reads.set_allow_oom(fake, ["k"], ["w"])
    assert_unsupported(info.value, "set_allow_oom")
    assert fake.get("k") == b"v"


def test_fakeredis_binds_a_flagged_function_and_refuses_to_run_it_at_its_directive(
    fake: fakeredis.FakeRedis,
) -> None:
    import flagpkg.reads as reads

    # fakeredis compiles a script when it runs it, not at SCRIPT LOAD: bind cannot see the #!lua line
    assert luaimport.bind(fake, reads.set_bare_flags) == {
        "flagpkg.reads.set_bare_flags": reads.set_bare_flags.sha
    }
    with pytest.raises(LuaError) as info:
        reads.set_bare_flags(fake, ["k"], ["w"])
    assert_unsupported(info.value, "set_bare_flags")
    assert "error loading code" in info.value.server_message
    assert fake.get("k") == b"v"


@pytest.mark.parametrize("transaction", [False, True], ids=["pipeline", "transaction"])
def test_fakeredis_refuses_a_pipelined_readonly_call_at_its_directive(
    fake: fakeredis.FakeRedis, transaction: bool
) -> None:
    import flagpkg.reads as reads

    pipe = fake.pipeline(transaction=transaction)
    pipe.set("k", "w")
    reads.get(pipe, ["k"])
    with pytest.raises(LuaError) as info:
        pipe.execute()
    assert_unsupported(info.value, "get")
    # fakeredis refuses EVALSHA_RO as it is queued: a transaction runs nothing, a pipeline the rest
    assert fake.get("k") == (b"v" if transaction else b"w")


def test_fakeredis_runs_the_unflagged_functions_of_a_module_with_flags(fake: fakeredis.FakeRedis) -> None:
    import flagpkg.reads as reads

    assert reads.plain(fake, ["k"]) == b"flagged:v"
    assert reads.plain_calls_readonly(fake, ["k"]) == b"v"


# -- Redis Cluster: read-only calls on replicas -----------------------------------------------------

# redis-py 5.1 added load balancing strategies (and deprecated read_from_replicas)
BALANCING = getattr(redis.cluster, "LoadBalancingStrategy", None)
READS: dict[str, dict[str, Any]] = {"read_from_replicas": {"read_from_replicas": True}}
if BALANCING is not None:
    READS["round_robin"] = {"load_balancing_strategy": BALANCING.ROUND_ROBIN}
    READS["replicas_only"] = {"load_balancing_strategy": BALANCING.ROUND_ROBIN_REPLICAS}
#: keys on every primary, one hash tag each
CLUSTER_KEYS = [f"{{r{i}}}k" for i in range(30)]


@pytest.fixture(params=list(READS.values()), ids=list(READS))
def replica_reads(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[dict[str, Any]]:
    """How a cluster client may read from replicas; the keys are on every primary, replicated.

    Deprecation warnings are off: read_from_replicas is deprecated in redis-py 5.1 and later.
    """
    cluster.replicas_listed()
    writer = RedisCluster(host="127.0.0.1", port=cluster.port)
    try:
        for key in CLUSTER_KEYS:
            writer.set(key, key)
        assert {writer.get_node_from_key(key).port for key in CLUSTER_KEYS} == {
            node.port for node in cluster.primaries
        }
    finally:
        writer.close()
    for node in cluster.primaries:
        assert node.client.wait(1, 5000) == 1
    for node in cluster.nodes:
        node.client.config_resetstat()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Call to '__init__' function with deprecated usage")
        yield request.param


@pytest.fixture
def replica_reader(cluster: Cluster, replica_reads: dict[str, Any]) -> Iterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=cluster.port, **replica_reads)
    yield client
    client.close()


def node_calls(nodes: list[Any], *commands: str) -> int:
    return sum(calls(node.client, command) for node in nodes for command in commands)


def test_readonly_calls_run_on_replicas_of_a_cluster(
    cluster: Cluster, replica_reads: dict[str, Any], replica_reader: RedisCluster
) -> None:
    import flagpkg.reads as reads

    if flags_supported(cluster.primaries[0].client):
        results = [reads.get(replica_reader, [key]) for _ in range(4) for key in CLUSTER_KEYS]
        assert results == [key.encode() for key in CLUSTER_KEYS] * 4
        assert node_calls(cluster.replicas, "evalsha_ro", "eval_ro") > 0
        assert node_calls(cluster.nodes, "evalsha_ro") == 4 * len(CLUSTER_KEYS)  # each call once
        assert node_calls(cluster.nodes, "eval_ro") == 1  # the first call's heal, and no other miss
        assert node_calls(cluster.nodes, "evalsha", "eval") == 0
        if replica_reads == READS.get("replicas_only"):
            assert node_calls(cluster.primaries, "evalsha_ro", "eval_ro") == 0
    else:
        for key in CLUSTER_KEYS[:3]:
            with pytest.raises(LuaError) as info:
                reads.get(replica_reader, [key])
            assert_unsupported(info.value, "get")


def test_a_readonly_script_missing_on_replicas_heals_once_on_every_node(
    cluster: Cluster, replica_reader: RedisCluster
) -> None:
    import flagpkg.reads as reads

    if flags_supported(cluster.primaries[0].client):
        assert [reads.get(replica_reader, [key]) for key in CLUSTER_KEYS * 2] == [
            key.encode() for key in CLUSTER_KEYS * 2
        ]
        assert node_calls(cluster.nodes, "eval_ro") == 1  # one miss in all: its heal loaded everywhere
        for node in cluster.nodes:
            assert calls(node.client, "script|load") == 1
            assert node.client.script_exists(reads.get.sha) == [True]
    else:
        with pytest.raises(LuaError) as info:
            reads.get(replica_reader, [CLUSTER_KEYS[0]])
        assert_unsupported(info.value, "get")


def test_a_cluster_pipeline_runs_readonly_calls_on_replicas(
    cluster: Cluster, replica_reader: RedisCluster
) -> None:
    import flagpkg.reads as reads

    pipe = replica_reader.pipeline()
    for key in CLUSTER_KEYS:
        reads.get(pipe, [key])
    reads.many_flags(pipe, [], [])  # no keys: EVALSHA_RO too, to a random slot's node
    if flags_supported(cluster.primaries[0].client):
        assert pipe.execute() == [key.encode() for key in CLUSTER_KEYS] + [b"flagged:many"]
        assert node_calls(cluster.replicas, "evalsha_ro") > 0
        assert node_calls(cluster.nodes, "evalsha_ro") == len(CLUSTER_KEYS) + 1
        assert node_calls(cluster.nodes, "evalsha") == 0
        assert node_calls(cluster.nodes, "eval", "eval_ro") == 0
    else:  # the pre-load fails to compile the #!lua line: nothing ran
        with pytest.raises(LuaError) as info:
            pipe.execute()
        assert_unsupported(info.value, "get")
        assert node_calls(cluster.nodes, "evalsha", "evalsha_ro") == 0


def test_asyncio_cluster_readonly_calls_run_on_replicas(
    cluster: Cluster, replica_reads: dict[str, Any]
) -> None:
    import flagpkg.reads as reads

    async def scenario() -> list[Any]:
        client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=cluster.port, **replica_reads)
        try:
            return [await reads.get(client, [key]) for key in CLUSTER_KEYS * 2]
        finally:
            await client.aclose()

    if flags_supported(cluster.primaries[0].client):
        assert asyncio.run(scenario()) == [key.encode() for key in CLUSTER_KEYS * 2]
        assert node_calls(cluster.replicas, "evalsha_ro", "eval_ro") > 0
        assert node_calls(cluster.nodes, "eval_ro") == 1
    else:
        with pytest.raises(LuaError) as info:
            asyncio.run(scenario())
        assert_unsupported(info.value, "get")


# -- the demo's read-only function ------------------------------------------------------------------


def test_the_demos_readonly_function_runs_as_evalsha_ro(client: redis.Redis) -> None:
    from demo_pkg import ratelimit

    assert ratelimit.remaining.readonly
    client.config_resetstat()
    if flags_supported(client):
        assert ratelimit.remaining(client, bucket="b", capacity=5, rate=1) == 5  # a missing bucket is full
        assert ratelimit.remaining(client, bucket="b", capacity=5, rate=1) == 5
        assert calls(client, "evalsha_ro") == 2  # the first one missed, and was run by EVAL_RO
        assert calls(client, "eval_ro") == 1
        assert calls(client, "evalsha") == calls(client, "eval") == 0
    else:
        with pytest.raises(LuaError, match="which this server does not support") as info:
            ratelimit.remaining(client, bucket="b", capacity=5, rate=1)
        directive = Path(ratelimit.__file__).read_text().split("\n").index("--@readonly") + 1
        assert (info.value.filename, info.value.lineno) == (ratelimit.__file__, directive)


def test_the_demos_readonly_function_runs_on_replicas(cluster: Cluster, replica_reader: RedisCluster) -> None:
    from demo_pkg import ratelimit

    if flags_supported(cluster.primaries[0].client):
        buckets = [f"{{r{i}}}bucket" for i in range(30)]
        assert [ratelimit.remaining(replica_reader, bucket=b, capacity=3, rate=1) for b in buckets * 2] == [
            3
        ] * 60
        assert node_calls(cluster.replicas, "evalsha_ro", "eval_ro") > 0
        assert node_calls(cluster.nodes, "evalsha", "eval") == 0
    else:
        with pytest.raises(LuaError, match="which this server does not support"):
            ratelimit.remaining(replica_reader, bucket="{r0}bucket", capacity=3, rate=1)
