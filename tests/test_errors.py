"""Errors raised inside the server come back located in the .lua sources."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import redis

import luaimport
from luaimport import LuaError, LuaSyntaxError

pytestmark = pytest.mark.usefixtures("import_state")

KINDS = Path(__file__).parent / "fixtures" / "errs" / "kinds.lua"

# kind -> (line in kinds.lua, function, error code, words the server says: Redis 7 and Valkey|Redis 6.2)
RUNTIME_ERRORS = {
    "explicit": (8, "errs.kinds.explicit", "ERR", "explicit failure"),
    "index_nil": (12, "errs.kinds.index_nil", "ERR", "attempt to index local 't' (a nil value)"),
    "arith_nil": (16, "errs.kinds.arith_nil", "ERR", "attempt to perform arithmetic on local 'missing'"),
    "wrongtype": (20, "errs.kinds.wrongtype", "WRONGTYPE", "WRONGTYPE Operation against a key"),
    "unknown_command": (23, "errs.kinds.unknown_command", "ERR", "command called from"),
    "write_global": (26, "errs.kinds.write_global", "ERR", "readonly table|create global variable 'leaked'"),
    "read_global": (30, "errs.kinds.read_global", "ERR", "nonexistent global variable 'undefined_thing'"),
    "prelude_helper": (3, "errs.kinds.<prelude>", "ERR", "not positive: -5"),
    "runaway": (36, "errs.kinds.runaway", "ERR", "stack overflow"),
}


@pytest.mark.parametrize("kind", sorted(RUNTIME_ERRORS))
def test_runtime_error_in_a_callee_of_another_module(client: redis.Redis, kind: str) -> None:
    import errs.entry as entry

    lineno, function, code, words = RUNTIME_ERRORS[kind]
    with pytest.raises(LuaError) as info:
        entry.run(client, ["{errs}key"], [kind])
    err = info.value
    assert isinstance(err, redis.exceptions.ResponseError)
    assert (err.filename, err.lineno, err.function, err.code) == (str(KINDS), lineno, function, code)
    assert str(err).startswith(f"{KINDS}:{lineno} in {function}: ")
    assert any(w in str(err) and w in err.server_message for w in words.split("|"))
    assert "user_script" not in str(err)


@pytest.mark.parametrize("kind", sorted(RUNTIME_ERRORS))
def test_traceback_ends_at_the_lua_line(client: redis.Redis, kind: str) -> None:
    import errs.entry as entry

    lineno, function, _, _ = RUNTIME_ERRORS[kind]
    with pytest.raises(LuaError) as info:
        entry.run(client, ["{errs}key"], [kind])
    frames = traceback.extract_tb(info.value.__traceback__)
    last = frames[-1]
    assert (last.filename, last.lineno, last.name) == (str(KINDS), lineno, function)
    assert last.line == KINDS.read_text().splitlines()[lineno - 1].strip()
    assert frames[0].name == "test_traceback_ends_at_the_lua_line"  # the caller's frames are kept
    rendered = "".join(traceback.format_exception(info.value))
    assert f'File "{KINDS}", line {lineno}, in {function}\n' in rendered


def test_error_code_from_an_error_table(client: redis.Redis) -> None:
    import errs.entry as entry

    with pytest.raises(LuaError) as info:
        entry.run(client, ["{errs}key"], ["custom_code"])
    if "Error running script" in info.value.server_message:
        # Redis 6.2 cannot report error tables: its own error handler fails on them
        assert info.value.lineno is None
        assert info.value.function == "errs.entry.run"
    else:
        assert (info.value.code, info.value.lineno) == ("MYCODE", 39)
        assert str(info.value).endswith(": MYCODE something specific")


def test_compile_error_from_the_server_is_a_syntax_error_at_the_lua_line(client: redis.Redis) -> None:
    mod = luaimport.loads(
        "local ok = 1\n--@function f\nlocal a = 1\nlocal b = = 2\nreturn a\n", "compilebad", "compilebad.lua"
    )
    with pytest.raises(LuaSyntaxError) as info:
        mod.f(client)
    err = info.value
    assert isinstance(err, SyntaxError)
    assert (err.filename, err.lineno, err.text) == ("compilebad.lua", 4, "local b = = 2")
    assert "unexpected symbol near '='" in err.msg
    assert "compilebad.f" in err.msg


def test_compile_error_in_a_callee_names_the_callee_file(
    client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cb_callee.lua").write_text("--@function g\nlocal x = 1\nreturn x +\n")
    (tmp_path / "cb_caller.lua").write_text("--@function f\nreturn CALL.cb_callee.g({}, {})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import cb_caller

    with pytest.raises(LuaSyntaxError) as info:
        cb_caller.f(client)
    assert (info.value.filename, info.value.lineno) == (str(tmp_path / "cb_callee.lua"), 3)
    assert "(in cb_callee.g)" in info.value.msg
