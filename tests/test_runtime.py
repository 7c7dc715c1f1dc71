"""Calling linked scripts on a real server: results, CALL semantics, loading and healing."""

from __future__ import annotations

import asyncio
import enum
import gc
import importlib
import sys
import threading
import weakref
from pathlib import Path

import pytest
import redis
import redis.asyncio
from _threads import run_in_threads
from _zips import make_zip

import luaimport
from luaimport import LuaArgumentError, LuaError, LuaSyntaxError

pytestmark = pytest.mark.usefixtures("import_state")

FIXTURES = Path(__file__).parent / "fixtures"


def test_lua_call_readme_example(client: redis.Redis, text_client: redis.Redis) -> None:
    import lipkg.basic as basic

    assert basic.return_args(client, [], [1, 2, 3]) == [b"1", b"2", b"3"]
    assert basic.call_return(client, [], [4, 5, 6]) == [1, 2, 3, [b"4", b"5", b"6"]]
    assert basic.call_return(text_client, [], [4, 5, 6]) == [1, 2, 3, ["4", "5", "6"]]


def test_call_passes_lua_values_unconverted(client: redis.Redis) -> None:
    import lipkg.basic as basic

    assert basic.types(client) == [b"table", b"number", b"true", b"false", 8, 2]


def test_recursion_within_a_module(client: redis.Redis) -> None:
    import lipkg.basic as basic

    assert basic.factorial(client, [], [10]) == 3628800


def test_mutual_recursion_across_modules(client: redis.Redis) -> None:
    import lipkg.parity_even as even

    assert even.start(client, [], [11]) == 0
    assert even.start(client, [], [40]) == 1


def test_call_without_parentheses_is_the_function_value(client: redis.Redis) -> None:
    import lipkg.basic as basic

    assert basic.value(client) == [b"via value"]


def test_extra_call_arguments_arrive_as_varargs(client: redis.Redis) -> None:
    import lipkg.basic as basic

    assert basic.extras(client) == 2


def test_call_reference_split_over_lines_runs(client: redis.Redis) -> None:
    # CALL[n] is written where the reference ends: "CALL[1]\n(...)" would be Lua 5.1's
    # "ambiguous syntax (function call x new statement)" (found by tests/test_fuzz.py)
    source = (
        "--@function one\nreturn 1\n--@function two\nreturn CALL.\none({}, {}) + CALL[\n'one'\n]({}, {})\n"
    )
    mod = luaimport.loads(source, "split")
    assert "\nreturn \nCALL[2]({}, {}) + \n\nCALL[2]({}, {})\n" in mod.two.script
    assert mod.two(client) == 2


def test_strings_and_comments_are_sent_byte_for_byte(client: redis.Redis) -> None:
    import lipkg.strings as strings

    source = Path(strings.__file__).read_text()
    body = source.split("-- KEYS and ARGV in this comment", 1)[1]
    assert body in strings.texts.script  # every line of the section, unchanged
    result = strings.texts(client, ["k1"], ["a1"])
    assert result == [
        b"KEYS[1] ARGV[2] CALL.x({}, {})",
        b"--@function fake",
        b"--@function also_fake\nCALL.inside_long_string(KEYS, ARGV)\n",
        b" ]] still inside ]=] CALL['x.y'] ",
        b'tab\tnewline\\n quote" AB',
        b"KEYS ARGV CALL.x( --@function nope",
        b"k1",
        b"a1",
    ]
    assert strings.__all__ == ["texts"]


def test_marker_less_module_called_as_the_module(client: redis.Redis) -> None:
    import lipkg.single as single

    assert single(client, ["counter"], [5]) == 5
    assert single(client, ["counter"]) == 6


def test_marker_less_module_is_a_call_target(client: redis.Redis) -> None:
    import lipkg.uses_single as uses

    assert uses.incr_twice(client, ["c"], [3]) == 6
    assert client.get("c") == b"3"


def test_three_hundred_functions_each_calling_the_next(client: redis.Redis) -> None:
    parts = []
    for i in range(1, 301):
        body = f"return CALL.f{i + 1}(KEYS, {{ARGV[1] + 1}})" if i < 300 else "return {ARGV[1], KEYS[1]}"
        parts.append(f"--@function f{i}\n{body}\n")
    chain = luaimport.loads("".join(parts), "chain")
    assert chain.f1.script.count("= function(KEYS, ARGV)\n") == 300
    assert chain.f1.script.startswith("local CALL = {[0] = function(reply)")
    assert chain.f1(client, ["k"], [0]) == [299, b"k"]
    assert chain.f150(client, ["k"], [0]) == [150, b"k"]


def test_call_heals_after_script_flush(client: redis.Redis) -> None:
    import lipkg.basic as basic

    assert client.script_exists(basic.return_args.sha) == [False]
    assert basic.return_args(client, [], ["x"]) == [b"x"]
    assert client.script_exists(basic.return_args.sha) == [True]
    client.script_flush()
    assert basic.return_args(client, [], ["y"]) == [b"y"]


def _evict_eval_scripts(client: redis.Redis) -> None:
    """Send 600 EVALs of distinct scripts: more than the 500 EVAL-only scripts Redis 8 and Valkey 8+ keep."""
    with client.pipeline(transaction=False) as pipe:
        for i in range(600):
            pipe.eval(f"return {i}", 0)
        pipe.execute()


@pytest.mark.parametrize("piped", [False, True], ids=["direct", "pipeline"])
def test_a_call_heals_when_redis_8_evicts_a_script_first_sent_by_eval(
    client: redis.Redis, piped: bool
) -> None:
    import lipkg.single as single

    assert client.eval(single.script, 1, "n", 1) == 1  # someone ran the linked text with EVAL first
    luaimport.bind(client, single)
    _evict_eval_scripts(client)
    # Server-specific: Redis 8 keeps the scripts that reached its cache through EVAL on an LRU list
    # of 500, and a later SCRIPT LOAD (bind, a heal) leaves them on it, so this one is evicted.
    # Valkey 8+ takes a script off the list at SCRIPT LOAD; Redis 6.2 and 7.0 evict nothing.
    info = client.info("server")
    redis8 = "valkey_version" not in info and int(info["redis_version"].split(".")[0]) >= 8
    assert client.script_exists(single.sha) == [not redis8]
    if piped:
        pipe = client.pipeline()
        single(pipe, ["n"], [1])
        assert pipe.execute() == [2]  # the pre-load finds it missing and loads it
    else:
        assert single(client, ["n"], [1]) == 2  # NOSCRIPT, healed
    _evict_eval_scripts(client)
    assert client.script_exists(single.sha) == [True]  # loaded after its eviction: kept, on every server


def test_a_heal_loads_then_runs_the_script_by_its_text(client: redis.Redis) -> None:
    import lipkg.single as single

    client.config_resetstat()
    assert single(client, ["n"], [1]) == 1
    stats = client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1  # the miss: it ran nothing
    assert stats["cmdstat_eval"]["calls"] == 1  # the run, which a flush cannot make miss again
    assert (stats.get("cmdstat_script|load") or stats["cmdstat_script"])["calls"] == 1
    assert client.script_exists(single.sha) == [True]
    assert single(client, ["n"], [1]) == 2
    assert client.info("commandstats")["cmdstat_evalsha"]["calls"] == 2  # loaded: EVALSHA hits


def test_a_heal_is_one_round_trip() -> None:
    """The protocol asks for the load and the run together, as one batch: a flush can come between
    them only on the server, where the EVAL carries the text and cannot miss."""
    one = luaimport.loads("--@function f\nreturn 1\n", "one")
    linked = one.f.linked
    miss = redis.exceptions.NoScriptError("No matching script.")
    command = luaimport._protocol.evalsha(linked, (0,))
    protocol = luaimport._protocol.recover(linked, command, miss)
    assert next(protocol) == [("SCRIPT LOAD", linked.script), ("EVAL", linked.script, 0)]
    with pytest.raises(StopIteration) as done:
        protocol.send([linked.sha, 1])
    assert done.value.value == 1


def test_an_error_of_the_heals_eval_says_the_call_was_being_healed() -> None:
    """A user without EVAL gets NOPERM for a command it never named: a note says why EVAL was sent.
    The server's error keeps its class and text; a script's own error, located, gets no note."""
    one = luaimport.loads("--@function f\nreturn 1\n", "one")
    linked = one.f.linked
    miss = redis.exceptions.NoScriptError("No matching script.")
    refused = redis.exceptions.NoPermissionError("User app has no permissions to run the 'eval' command")
    protocol = luaimport._protocol.recover(linked, luaimport._protocol.evalsha(linked, (0,)), miss)
    next(protocol)
    with pytest.raises(redis.exceptions.NoPermissionError) as info:
        protocol.send([refused, refused])  # SCRIPT LOAD and EVAL both refused
    assert info.value is refused
    assert info.value.__notes__ == ["(while running one.f by its text: the server's cache missed it)"]
    failed = redis.exceptions.ResponseError(
        "user_script:2: boom script: " + linked.sha + ", on @user_script:2."
    )
    protocol = luaimport._protocol.recover(linked, luaimport._protocol.evalsha(linked, (0,)), miss)
    next(protocol)
    with pytest.raises(LuaError) as located:
        protocol.send([linked.sha, failed])
    assert not hasattr(located.value, "__notes__")


def test_a_healed_script_outlives_the_eval_eviction_of_newer_servers(client: redis.Redis) -> None:
    """Redis 8 and Valkey 8+ evict scripts that reached the cache only through EVAL (500 at most);
    the heal's SCRIPT LOAD, sent before its EVAL, keeps the script off that list."""
    import lipkg.single as single

    assert single(client, ["n"], [1]) == 1  # a miss, healed
    evicted = client.info("stats").get("evicted_scripts")
    _evict_eval_scripts(client)
    if evicted is not None:  # a server that evicts: the eviction really happened
        assert client.info("stats")["evicted_scripts"] >= evicted + 100
    assert client.script_exists(single.sha) == [True]
    client.config_resetstat()
    assert single(client, ["n"], [1]) == 2
    assert "cmdstat_eval" not in client.info("commandstats")  # no heal was needed


def test_concurrent_calls_after_a_flush_all_heal_and_each_runs_once(client: redis.Redis) -> None:
    import lipkg.single as single

    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        try:
            for _ in range(20):
                single(client, ["runs"], [1])
        except BaseException as exc:  # reported below, with the count
            errors.append(exc)

    for _ in range(3):
        client.script_flush()
        run_in_threads(worker, 16)
    assert errors == []
    assert client.get("runs") == b"960"  # 3 rounds x 16 threads x 20 calls: none lost, none run twice


LIARS = {
    "exact": "return redis.error_reply('NOSCRIPT No matching script.')",
    "redis-text": "return redis.error_reply('NOSCRIPT No matching script. Please use EVAL.')",
    "newline": "return {err = 'NOSCRIPT No matching script.\\n'}",
    "carriage-return": "return {err = 'NOSCRIPT No matching script. Please use EVAL.\\r'}",
    "nul": "return {err = 'NOSCRIPT No matching script.\\0tail'}",
    "dash": "return {err = '-NOSCRIPT No matching script.'}",
    "metatable": "return setmetatable({}, {__index = {err = 'NOSCRIPT No matching script.'}})",
}


@pytest.mark.parametrize("reply", list(LIARS.values()), ids=list(LIARS))
def test_a_script_replying_like_a_cache_miss_is_never_run_twice(client: redis.Redis, reply: str) -> None:
    liar = luaimport.loads(f"--@function liar\nredis.call('INCR', KEYS[1])\n{reply}\n", "liar")
    for expected in (1, 2):  # the first call loads the script after a real miss; neither runs it twice
        try:
            result = liar.liar(client, ["runs"])
        except redis.exceptions.ResponseError as exc:
            result = exc
        assert str(result) not in ("No matching script.", "No matching script. Please use EVAL.")
        assert int(client.get("runs")) == expected
    if reply == LIARS["exact"]:
        assert type(result) is redis.exceptions.NoScriptError
        assert str(result) == "(a reply of the script, not a cache miss) NOSCRIPT No matching script."


def test_errors_without_a_script_position_keep_their_class(client: redis.Redis) -> None:
    replier = luaimport.loads("--@function f\nreturn redis.error_reply('READONLY pretend')\n", "replier")
    with pytest.raises(redis.exceptions.ReadOnlyError) as info:
        replier.f(client)
    assert not isinstance(info.value, LuaError)


def test_bind_loads_every_imported_module_in_one_round_trip(client: redis.Redis) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    client.config_resetstat()
    loaded = luaimport.bind(client)
    stats = client.info("commandstats")
    assert loaded["lipkg.basic.call_return"] == basic.call_return.sha
    assert loaded["lipkg.single"] == single.sha
    assert all(client.script_exists(*loaded.values()))
    # Redis 6.2 has no per-subcommand stats
    script_load = stats.get("cmdstat_script|load") or stats["cmdstat_script"]
    assert script_load["calls"] == len(loaded)


def test_bind_named_modules_and_functions_only(client: redis.Redis) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    loaded = luaimport.bind(client, single, basic.factorial)
    assert loaded == {"lipkg.single": single.sha, "lipkg.basic.factorial": basic.factorial.sha}


def test_bind_a_package_imports_and_loads_its_lua_modules(client: redis.Redis) -> None:
    import lipkg

    assert "lipkg.strings" not in sys.modules
    loaded = luaimport.bind(client, lipkg)
    modules = [importlib.import_module(info.name) for info in luaimport.iter_modules(lipkg)]
    expected = {f.__qualname__: f.sha for m in modules for f in luaimport.lua_functions(m)}
    assert "lipkg.strings.texts" in expected and "lipkg.single" in expected
    assert loaded == expected
    assert all(client.script_exists(*loaded.values()))


def test_bind_a_package_in_a_zip_archive(
    client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(make_zip(FIXTURES / "zipsrc", tmp_path / "scripts.zip")))
    import zpkg

    loaded = luaimport.bind(client, zpkg)
    assert sorted(loaded) == [
        "zpkg.zmod.greet",
        "zpkg.zmod.via_other",
        "zpkg.zother.echo",
        "zpkg.zsub.zdeep.where",
    ]
    assert all(client.script_exists(*loaded.values()))
    from zpkg import zmod

    client.config_resetstat()
    assert zmod.via_other(client, [], ["hi"]) == b"hi"
    assert "cmdstat_script|load" not in client.info("commandstats")  # bound: no load on first call


def test_bind_refuses_a_plain_module(client: redis.Redis) -> None:
    import lipkg.shadowed

    with pytest.raises(TypeError, match="neither a Lua module nor a package"):
        luaimport.bind(client, lipkg.shadowed)


def test_bind_reports_a_compile_error_at_the_lua_line(client: redis.Redis) -> None:
    bad = luaimport.loads(
        "--@function ok\nreturn 1\n--@function broken\nlocal x = \n", "badcompile", "bad.lua"
    )
    with pytest.raises(LuaSyntaxError) as info:
        luaimport.bind(client, bad)
    assert (info.value.filename, info.value.lineno) == ("bad.lua", 4)


def test_runtime_error_points_at_the_lua_file_and_line(client: redis.Redis) -> None:
    mod = luaimport.loads(
        "local function boom(x)\n  return x.field\nend\n--@function f\nlocal y = 1\nreturn boom(nil)\n",
        "errmod",
        "errmod.lua",
    )
    with pytest.raises(LuaError) as info:
        mod.f(client)
    err = info.value
    assert isinstance(err, redis.exceptions.ResponseError)
    assert (err.filename, err.lineno, err.function) == ("errmod.lua", 2, "errmod.<prelude>")
    assert str(err).startswith("errmod.lua:2 in errmod.<prelude>: attempt to index local 'x' (a nil value)")


@pytest.mark.parametrize(
    ("keys", "args", "message"),
    [
        ("key", None, r"keys must be a list or tuple, not str \(a single value must be wrapped: \['key'\]\)"),
        (None, [None], r"args\[0\] is None"),
        (None, [1, {"a": 1}], r"args\[1\] is \{'a': 1\}"),
        (None, [[1]], r"args\[0\] is \[1\]"),
        ([True], None, r"keys\[0\] is True \(bool\)"),
        (None, [object()], r"args\[0\] is <object"),
        ({"k": 1}, None, "keys must be a list or tuple, not dict"),
        (b"key", None, "keys must be a list or tuple, not bytes"),
    ],
)
def test_bad_arguments_raise_type_error_before_any_network_call(
    keys: object, args: object, message: str
) -> None:
    import lipkg.basic as basic

    nowhere = redis.Redis(port=1, socket_connect_timeout=0.1)  # nothing listens: any I/O would fail
    with pytest.raises(LuaArgumentError, match=message) as info:
        basic.identity(nowhere, keys, args)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    assert "lipkg.basic.identity()" in str(info.value)


def test_accepted_argument_types(client: redis.Redis) -> None:
    import lipkg.basic as basic

    assert basic.return_args(client, (), ("s", b"b", 3, 1.5)) == [b"s", b"b", b"3", b"1.5"]
    assert basic.return_args(client, None, range(2)) == [b"0", b"1"]

    class Level(enum.IntEnum):
        HIGH = 3

    class Ratio(float):
        def __repr__(self) -> str:
            return f"Ratio({float(self)})"

    # subclasses of int and float go as their number, not their repr() (which redis-py would send)
    assert basic.return_args(client, [], [Level.HIGH, Ratio(0.5)]) == [b"3", b"0.5"]


def test_asyncio_client(server_kwargs: dict[str, object]) -> None:
    import lipkg.basic as basic

    async def scenario() -> tuple[object, object, object]:
        aclient = redis.asyncio.Redis(**server_kwargs)  # type: ignore[arg-type]
        try:
            loaded = await luaimport.bind(aclient, basic)
            result = await basic.call_return(aclient, [], [4, 5, 6])
            await aclient.script_flush()
            healed = await basic.factorial(aclient, [], [5])
            return loaded, result, healed
        finally:
            await aclient.aclose()

    loaded, result, healed = asyncio.run(scenario())
    assert loaded["lipkg.basic.call_return"] == basic.call_return.sha
    assert result == [1, 2, 3, [b"4", b"5", b"6"]]
    assert healed == 120


def test_client_without_execute_command_is_a_type_error() -> None:
    import lipkg.basic as basic

    with pytest.raises(TypeError, match="redis-py style client"):
        basic.identity(object())


def test_functions_link_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lazy.lua").write_text("--@function f\nreturn 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lazy = importlib.import_module("lazy")
    assert lazy.f._linked is None
    assert lazy.f.sha == lazy.f._linked.sha


@pytest.mark.parametrize("cold", [False, True], ids=["loaded", "after-flush"])
@pytest.mark.parametrize("reply", ["error('located')", "return redis.error_reply('READONLY passed through')"])
@pytest.mark.parametrize("piped", [False, True], ids=["direct", "pipeline"])
def test_a_failed_call_leaves_no_reference_cycle(
    server_kwargs: dict[str, object], cold: bool, reply: str, piped: bool
) -> None:
    failing = luaimport.loads(f"--@function f\n{reply}\n", "failing")
    own = redis.Redis(**server_kwargs)  # type: ignore[arg-type]
    if cold:
        own.script_flush()
    freed = weakref.ref(own)
    gc.collect()
    gc.disable()
    try:
        raised = False
        try:
            if piped:
                failing.f(own.pipeline()).execute()
            else:
                failing.f(own)
        except redis.exceptions.ResponseError:
            raised = True
        assert raised
        own.close()
        del own
        assert freed() is None  # freed by reference counting alone, as after a raw EVALSHA that fails
    finally:
        gc.enable()
