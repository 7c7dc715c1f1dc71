"""Pipelines and transactions on one server: loading before execute, no replay, WATCH, reset."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
import redis
import redis.asyncio

import luaimport
from luaimport import LuaError, LuaNotLoadedError

pytestmark = pytest.mark.usefixtures("import_state")


def command_calls(client: redis.Redis, *names: str) -> int:
    """How many times the server ran these commands ('script|load'; Redis 6.2 counts only 'script')."""
    stats = client.info("commandstats")
    total = 0
    for name in names:
        entry = stats.get(f"cmdstat_{name}") or stats.get(f"cmdstat_{name.split('|')[0]}", {})
        total += entry.get("calls", 0)
    return total


@pytest.mark.parametrize("transaction", [False, True])
def test_each_script_is_loaded_once_inside_the_pipeline(client: redis.Redis, transaction: bool) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    luaimport.bind(client, single)
    client.config_resetstat()
    pipe = client.pipeline(transaction=transaction)
    for i in range(5):
        single(pipe, ["n"], [1])
        basic.return_args(pipe, [], [i])
    assert len(pipe) == 10  # the loads are not the user's commands
    results = pipe.execute()
    assert results[0::2] == [1, 2, 3, 4, 5]
    assert results[1::2] == [[b"0"], [b"1"], [b"2"], [b"3"], [b"4"]]
    stats = client.info("commandstats")
    if "cmdstat_script" in stats:  # Redis 6.2 counts SCRIPT subcommands together
        assert stats["cmdstat_script"]["calls"] == 2
    else:
        assert stats["cmdstat_script|load"]["calls"] == 2  # one per script, loaded or not
        assert "cmdstat_script|exists" not in stats  # nothing asked first: no extra round trip
    assert command_calls(client, "evalsha") == 10
    assert client.script_exists(single.sha, basic.return_args.sha) == [True, True]


def test_the_loads_go_with_the_pipeline_before_each_scripts_first_call() -> None:
    """The protocol sends no command of its own: the pipeline carries the loads, in one round trip."""
    one = luaimport.loads("--@function a\nreturn 1\n--@function b\nreturn 2\n", "inband")
    a, b = one.a.linked, one.b.linked
    protocol = luaimport._protocol.pipeline([(1, b), (2, a), (4, b)], raise_on_error=False, preload=False)
    assert next(protocol) == (luaimport._protocol.EXECUTE, ((1, b), (2, a)))
    with pytest.raises(StopIteration) as done:  # ran: x, LOAD b, b, LOAD a, a, y, b
        protocol.send(["x", b.sha, 2, a.sha, 1, "y", 2])
    assert done.value.value == ["x", 2, 1, "y", 2]


@pytest.mark.parametrize("transaction", [False, True])
def test_a_script_that_does_not_compile_fails_only_its_calls(client: redis.Redis, transaction: bool) -> None:
    import lipkg.single as single

    bad = luaimport.loads("--@function f\nlocal x = = 1\n", "pbadc", "pbadc.lua")
    pipe = client.pipeline(transaction=transaction)
    bad.f(pipe)
    single(pipe, ["n"], [1])
    bad.f(pipe)
    results = pipe.execute(raise_on_error=False)
    for result in results[0::2]:
        assert isinstance(result, luaimport.LuaSyntaxError)
        assert (result.filename, result.lineno, result.text) == ("pbadc.lua", 2, "local x = = 1")
    assert results[1] == 1  # the rest of the pipeline ran, as with any failing command


@pytest.mark.parametrize("transaction", [False, True])
def test_a_script_flushed_before_it_runs_is_reported_and_nothing_replays(
    client: redis.Redis, transaction: bool
) -> None:
    import lipkg.single as single

    pipe = client.pipeline(transaction=transaction)
    single(pipe, ["n"], [1])
    pipe.incr("plain")
    pipe.script_flush()  # runs inside the pipeline, after the scripts were loaded
    single(pipe, ["n"], [10])
    pipe.incr("plain")
    results = pipe.execute(raise_on_error=False)
    assert results[:3] == [1, 1, True]
    assert isinstance(results[3], LuaNotLoadedError)
    assert isinstance(results[3], redis.exceptions.NoScriptError)
    assert results[3].function == "lipkg.single"
    assert "was not replayed" in str(results[3])
    assert results[4] == 2
    assert client.get("n") == b"1"  # neither run twice nor run late
    assert client.get("plain") == b"2"


def test_a_script_replying_like_a_cache_miss_is_not_called_unloaded(client: redis.Redis) -> None:
    liar = luaimport.loads(
        "--@function f\nredis.call('INCR', KEYS[1])\n"
        "return redis.error_reply('NOSCRIPT No matching script.')\n",
        "pliar",
    )
    pipe = client.pipeline()
    liar.f(pipe, ["runs"])
    (result,) = pipe.execute(raise_on_error=False)
    assert type(result) is redis.exceptions.NoScriptError
    assert client.get("runs") == b"1"


def test_raise_on_error_raises_the_located_error_after_every_command_ran(client: redis.Redis) -> None:
    import errs.entry as entry

    pipe = client.pipeline()
    pipe.set("a", 1)
    entry.run(pipe, ["k"], ["explicit"])
    pipe.set("b", 2)
    with pytest.raises(LuaError, match=r"kinds\.lua:8 in errs\.kinds\.explicit: .*explicit failure") as info:
        pipe.execute()
    assert info.value.__notes__ == ["(command #2 of the pipeline)"]
    assert client.mget("a", "b") == [b"1", b"2"]
    assert len(pipe) == 0  # the pipeline was reset, as redis-py does


def test_other_errors_in_the_pipeline_keep_their_class(client: redis.Redis) -> None:
    import lipkg.single as single

    client.set("str", "x")
    pipe = client.pipeline()
    single(pipe, ["n"], [1])
    pipe.lpush("str", "y")
    with pytest.raises(redis.exceptions.ResponseError) as info:
        pipe.execute()
    assert not isinstance(info.value, LuaError)
    assert "WRONGTYPE" in str(info.value)


def test_watch_runs_calls_at_once_then_multi_queues_them(client: redis.Redis) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    with client.pipeline() as pipe:
        pipe.watch("n")
        assert basic.return_args(pipe, [], [5]) == [b"5"]  # immediate mode: a plain call, load included
        pipe.multi()
        assert single(pipe, ["n"], [1]) is pipe
        assert pipe.execute() == [1]
        pipe.watch("n")
        client.set("n", 10)  # the watched key changes: EXEC aborts and nothing is retried
        pipe.multi()
        single(pipe, ["n"], [1])
        with pytest.raises(redis.exceptions.WatchError):
            pipe.execute()
    assert client.get("n") == b"10"


def test_reset_forgets_queued_calls(client: redis.Redis) -> None:
    import lipkg.single as single

    pipe = client.pipeline()
    single(pipe, ["n"], [1])
    pipe.reset()
    client.config_resetstat()
    pipe.set("k", "v")
    assert pipe.execute() == [True]
    assert command_calls(client, "script|exists", "script|load", "evalsha") == 0


def test_a_pipeline_is_wrapped_once(client: redis.Redis) -> None:
    import lipkg.single as single

    pipe = client.pipeline()
    single(pipe, ["n"], [1])
    execute = pipe.execute
    single(pipe, ["n"], [1])
    assert pipe.execute == execute
    assert pipe.execute() == [1, 2]
    single(pipe, ["n"], [1])
    assert pipe.execute() == [3]  # still loads and maps after a first execute


def test_asyncio_pipeline_queues_without_await_and_maps_errors(server_kwargs: dict[str, object]) -> None:
    import errs.entry as entry
    import lipkg.single as single

    async def scenario() -> list[object]:
        aclient = redis.asyncio.Redis(**server_kwargs)  # type: ignore[arg-type]
        try:
            await aclient.script_flush()
            async with aclient.pipeline(transaction=True) as pipe:
                assert single(pipe, ["n"], [2]) is pipe
                entry.run(pipe, ["k"], ["index_nil"])
                return list(await pipe.execute(raise_on_error=False))
        finally:
            await aclient.aclose()

    two, error = asyncio.run(scenario())
    assert two == 2
    assert isinstance(error, LuaError)
    assert error.lineno == 12


def test_a_pipeline_that_cannot_run_is_reset_with_nothing_of_luaimport_left(client: redis.Redis) -> None:
    import lipkg.single as single

    nowhere = redis.Redis(port=1, socket_connect_timeout=0.2)
    pipe = nowhere.pipeline()
    pipe.set("x", 1)
    single(pipe, ["n"], [1])
    with pytest.raises(redis.exceptions.ConnectionError):
        pipe.execute()
    assert len(pipe) == 0  # no SCRIPT LOAD of luaimport's left among the commands
    assert pipe.connection is None
    single(pipe, ["n"], [1])
    assert pipe.command_stack == [(("EVALSHA", single.sha, 1, "n", 1), {})]


def test_a_pipeline_holds_no_connection_after_execute_and_is_freed_at_once(client: redis.Redis) -> None:
    liar = luaimport.loads(
        "--@function f\nreturn redis.error_reply('NOSCRIPT No matching script.')\n", "pliar2"
    )
    shared = client.connection_pool
    pool = redis.ConnectionPool(connection_class=shared.connection_class, **shared.connection_kwargs)
    own = redis.Redis(connection_pool=pool)
    pipe = own.pipeline()
    liar.f(pipe)  # its reply reads like a cache miss, so execute() checks SCRIPT EXISTS afterwards
    (result,) = pipe.execute(raise_on_error=False)
    assert type(result) is redis.exceptions.NoScriptError
    assert pipe.connection is None
    assert len(pool._in_use_connections) == 0
    freed = weakref.ref(pipe)
    gc.disable()
    try:
        del pipe
        assert freed() is None  # no reference cycle through the wrapped execute
    finally:
        gc.enable()
        own.close()


def test_an_error_passed_through_keeps_its_cause() -> None:
    import lipkg.basic as basic

    nowhere = redis.Redis(port=1, socket_connect_timeout=0.2)
    with pytest.raises(redis.exceptions.ConnectionError) as info:
        basic.identity(nowhere, [], [1])
    assert not info.value.__suppress_context__


def test_a_cancelled_execute_leaves_nothing_queued(
    client: redis.Redis, server_kwargs: dict[str, object]
) -> None:
    import lipkg.single as single

    async def scenario() -> tuple[int, list[object]]:
        aclient = redis.asyncio.Redis(**server_kwargs)  # type: ignore[arg-type]
        try:
            pipe = aclient.pipeline()
            single(pipe, ["n"], [1])
            client.client_pause(300)  # the pipeline waits for its connection: the timeout cancels it
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await pipe.execute()
            left = len(pipe)
            await asyncio.sleep(0.4)
            single(pipe, ["n"], [1])
            return left, list(await pipe.execute())
        finally:
            await aclient.aclose()

    left, results = asyncio.run(scenario())
    assert left == 0
    assert results == [1]  # the cancelled call never ran, and did not run later either
    assert client.get("n") == b"1"


def test_a_chained_pipeline_runs(client: redis.Redis) -> None:
    import lipkg.single as single

    assert single(client.pipeline(), ["n"], [2]).execute() == [2]  # nothing else holds the pipeline
    assert single(single(client.pipeline(), ["n"], [1]), ["n"], [1]).execute() == [3, 4]


def test_errors_kept_in_results_make_no_reference_cycle(client: redis.Redis) -> None:
    import errs.entry as entry

    def results() -> list[object]:
        kept = entry.run(client.pipeline(), ["k"], ["explicit"]).execute(raise_on_error=False)
        return list(kept)  # the list a caller holds while its frame is alive

    results()  # load the script first
    gc.collect()
    gc.disable()
    try:
        (error,) = results()
        assert isinstance(error, LuaError)
        error_ref = weakref.ref(error)
        del error
        assert error_ref() is None  # freed by reference counting: its traceback leads back to no caller
    finally:
        gc.enable()
