"""Clients other than redis-py's: valkey-py (sync and asyncio) on a real server, and fakeredis.

fakeredis runs scripts in lupa's Lua 5.1 inside the Python process.  luaimport
works with it for plain calls, CALLs, bind, pipelines and healing, and the
differences from a real server that users will meet are pinned down here, so
the README's list stays true.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import fakeredis
import pytest
import redis
import valkey
import valkey.asyncio

import luaimport
from luaimport import LuaError

pytestmark = pytest.mark.usefixtures("import_state")

KINDS_LUA = Path(__file__).parent / "fixtures" / "errs" / "kinds.lua"


def test_valkey_py_sync_client_pipeline_and_errors(server_kwargs: dict[str, object]) -> None:
    import errs.entry as entry
    import lipkg.basic as basic
    import lipkg.single as single

    client = valkey.Valkey(**server_kwargs)  # type: ignore[arg-type]
    try:
        client.script_flush()
        assert basic.call_return(client, [], [4, 5, 6]) == [1, 2, 3, [b"4", b"5", b"6"]]
        assert luaimport.bind(client, basic)["lipkg.basic.factorial"] == basic.factorial.sha
        client.script_flush()
        pipe = client.pipeline()
        assert single(pipe, ["n"], [2]) is pipe
        entry.run(pipe, ["k"], ["explicit"])
        two, error = pipe.execute(raise_on_error=False)
        with pytest.raises(LuaError) as info:
            entry.run(client, ["k"], ["index_nil"])
    finally:
        client.close()
    assert two == 2
    assert isinstance(error, LuaError)
    assert (error.filename, error.lineno) == (str(KINDS_LUA), 8)
    assert isinstance(info.value, redis.exceptions.ResponseError)  # luaimport's errors are redis-py's
    assert isinstance(info.value, valkey.exceptions.ResponseError)  # and valkey-py's, for its users
    assert isinstance(error, valkey.exceptions.ResponseError)
    assert info.value.lineno == 12


def test_valkey_py_asyncio_client(server_kwargs: dict[str, object]) -> None:
    import lipkg.basic as basic

    async def scenario() -> tuple[object, object, list[object]]:
        client = valkey.asyncio.Valkey(**server_kwargs)  # type: ignore[arg-type]
        try:
            await client.script_flush()
            result = await basic.call_return(client, [], [1])
            loaded = await luaimport.bind(client, basic)
            async with client.pipeline() as pipe:
                basic.factorial(pipe, [], [4])
                piped = await pipe.execute()
            return result, loaded, piped
        finally:
            await client.aclose()

    result, loaded, piped = asyncio.run(scenario())
    assert result == [1, 2, 3, [b"1"]]
    assert isinstance(loaded, dict)
    assert piped == [24]


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def test_fakeredis_calls_calls_across_modules_bind_heal_and_pipelines(fake: fakeredis.FakeRedis) -> None:
    import lipkg.basic as basic
    import lipkg.parity_even as even
    import lipkg.single as single

    assert basic.call_return(fake, [], [4, 5, 6]) == [1, 2, 3, [b"4", b"5", b"6"]]
    assert even.start(fake, [], [11]) == 0
    assert luaimport.bind(fake, basic)["lipkg.basic.factorial"] == basic.factorial.sha
    fake.script_flush()
    assert basic.factorial(fake, [], [5]) == 120
    fake.script_flush()
    pipe = fake.pipeline()
    single(pipe, ["n"], [2])
    single(pipe, ["n"], [3])
    assert pipe.execute() == [2, 5]


def test_fakeredis_lua_errors_are_located_but_command_errors_are_not(fake: fakeredis.FakeRedis) -> None:
    import errs.entry as entry

    with pytest.raises(LuaError) as info:
        entry.run(fake, ["k"], ["index_nil"])
    assert (info.value.filename, info.value.lineno) == (str(KINDS_LUA), 12)
    assert "stack traceback" not in str(info.value)
    assert '[string "<python>"]' in info.value.server_message  # fakeredis's own error text
    # A failing redis.call() carries no script position in fakeredis: it keeps redis-py's class
    with pytest.raises(redis.exceptions.ResponseError) as plain:
        entry.run(fake, ["k"], ["wrongtype"])
    assert not isinstance(plain.value, LuaError)


def test_fakeredis_known_differences(fake: fakeredis.FakeRedis) -> None:
    # No sandbox: an undefined global reads as nil instead of failing at the read
    reader = luaimport.loads("--@function f\nreturn type(undefined_thing)\n", "fakeglobals")
    assert reader.f(fake) == b"nil"
    # No *_RO commands, and no shebang line (flags)
    with pytest.raises(redis.exceptions.ResponseError, match="unknown command 'evalsha_ro'"):
        fake.execute_command("EVALSHA_RO", reader.f.sha, 0)
    with pytest.raises(redis.exceptions.ResponseError, match="error loading code"):
        fake.execute_command("EVAL", "#!lua flags=no-writes\nreturn 1", 0)
