"""The globals check: every planted mistake found at its line, and nothing else.

The corpus is ``tests/fixtures/globalspkg``: each line holding a mistake ends
with a comment ``-- expect: read NAME`` or ``-- expect: write NAME`` (several
separated by commas), and the check must report exactly those.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import luaimport
from luaimport import LuaGlobalError, LuaSyntaxError
from luaimport._bytecode import BytecodeError, global_accesses
from luaimport._globals import PROVIDED, PROVIDERS
from luaimport._sandbox import SERVERS

pytestmark = pytest.mark.usefixtures("import_state")

CORPUS = Path(__file__).parent / "fixtures" / "globalspkg"
_EXPECT = re.compile(r"-- expect: (.*)$")


def planted() -> set[tuple[str, int, str, str]]:
    expected = set()
    for path in sorted(CORPUS.glob("*.lua")):
        for lineno, line in enumerate(path.read_text().split("\n"), 1):
            match = _EXPECT.search(line)
            if match:
                for item in match.group(1).split(","):
                    kind, name = item.split()
                    expected.add((path.name, lineno, kind, name))
    return expected


def found(problems: list[SyntaxError | ImportError]) -> set[tuple[str, int, str, str]]:
    out = set()
    for problem in problems:
        assert isinstance(problem, LuaGlobalError), problem
        out.add(
            (Path(problem.filename).name, problem.lineno, "write" if problem.write else "read", problem.name)
        )
    return out


def test_every_planted_mistake_is_found_at_its_line_and_nothing_else() -> None:
    import globalspkg

    expected = planted()
    assert len(expected) == 39
    problems = luaimport.check(globalspkg, globals=["from_argument"])
    assert found(problems) == expected
    assert len(problems) == len(expected)  # each once, though callees are in several scripts


def test_the_argument_declares_globals() -> None:
    import globalspkg.declared

    without = found(luaimport.check(globalspkg.declared))
    assert ("declared.lua", 21, "read", "from_argument") in without
    assert ("declared.lua", 21, "read", "from_argument") not in found(
        luaimport.check(globalspkg.declared, globals=["from_argument"])
    )


def test_a_global_is_a_str_list_not_a_str() -> None:
    import globalspkg.single

    with pytest.raises(TypeError, match="list of names"):
        luaimport.check(globalspkg.single, globals="os")


def test_a_callee_from_another_module_is_reported_in_its_own_file() -> None:
    import globalspkg.typos

    [problem] = [
        p for p in luaimport.check(globalspkg.typos) if isinstance(p, LuaGlobalError) and p.name == "offest"
    ]
    assert isinstance(problem, LuaSyntaxError)  # a static error, like a compile error
    assert problem.filename.endswith("callee.lua")
    assert (problem.lineno, problem.text) == (3, "return n + offest -- expect: read offest")
    assert problem.function == "globalspkg.callee.broken"


def test_messages_say_what_and_suggest() -> None:
    import globalspkg.typos

    messages = {p.name: p.msg for p in luaimport.check(globalspkg.typos) if isinstance(p, LuaGlobalError)}
    assert (
        messages["tonumbr"]
        == "read of undefined global 'tonumbr' (did you mean 'tonumber'?) (in globalspkg.typos.body)"
    )
    assert (
        messages["nmae"]
        == "read of undefined global 'nmae' (did you mean 'name'?) (in globalspkg.typos.<prelude>)"
    )
    assert messages["KYES"].startswith("read of undefined global 'KYES' (did you mean 'KEYS'?)")
    assert messages["cache"] == (
        "assignment to global 'cache': a script cannot create globals (nor, on Redis 7+ and Valkey, "
        "change them); make it local (in globalspkg.typos.<prelude>)"
    )


def test_a_global_only_some_servers_provide_names_them() -> None:
    import globalspkg.declared

    [problem] = [
        p
        for p in luaimport.check(globalspkg.declared)
        if isinstance(p, LuaGlobalError) and p.name == "server"
    ]
    assert "which only Valkey 8.1.8, Valkey 9.1.2 provide" in problem.msg
    assert "'--@globals server'" in problem.msg


def test_a_closure_suggests_the_locals_it_can_see() -> None:
    mod = luaimport.loads(
        "--@function f\nlocal counter = 0\nlocal function g()\n  return countr\nend\nreturn g()\n", "sugg"
    )
    [problem] = luaimport.check(mod)
    assert "(did you mean 'counter'?)" in problem.msg  # type: ignore[attr-defined]


def test_the_project_modules_meant_to_be_valid_are_clean() -> None:
    import decl.moves
    import decl.single
    import flagpkg
    import lipkg

    import demo_pkg

    assert luaimport.check(demo_pkg, lipkg, flagpkg, decl.moves, decl.single) == []


def test_the_planted_globals_of_other_fixtures_are_found() -> None:
    import decl.vararg
    import errs.kinds

    assert found(luaimport.check(decl.vararg)) == {("vararg.lua", 2, "read", "arg")}
    assert {("kinds.lua", 26, "write", "leaked"), ("kinds.lua", 30, "read", "undefined_thing")} <= found(
        [p for p in luaimport.check(errs.kinds) if isinstance(p, LuaGlobalError)]
    )


def test_a_flagged_script_is_checked_past_its_first_line() -> None:
    import flagpkg.reads

    assert flagpkg.reads.get.script.startswith("#!lua")
    assert luaimport.check(flagpkg.reads) == []


# --- the measured sandbox ------------------------------------------------------


def test_the_measured_servers_are_the_matrix() -> None:
    assert sorted(SERVERS) == ["Redis 6.2.5", "Redis 7.0.15", "Redis 8.2.3", "Valkey 8.1.8", "Valkey 9.1.2"]


def test_the_accepted_globals_are_those_every_server_provides() -> None:
    assert {"redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct", "unpack", "loadstring"} <= PROVIDED
    for missing in ("os", "server", "print", "getfenv", "setfenv", "require", "io", "debug", "table.unpack"):
        assert missing not in PROVIDED
    assert PROVIDERS["os"] == ("Redis 8.2.3", "Valkey 8.1.8", "Valkey 9.1.2")
    assert PROVIDERS["print"] == ("Redis 6.2.5",)
    assert all(not name.startswith("f_") for server in SERVERS.values() for name in server)


def test_the_sandbox_matches_the_server_under_test(client) -> None:  # type: ignore[no-untyped-def]
    """The server the suite runs on provides every global the check accepts."""
    names = client.eval("local t = {} for k in pairs(_G) do t[#t + 1] = k end return t", 0)
    assert {n.decode() for n in names} >= PROVIDED


# --- the bytecode reader -----------------------------------------------------


def test_bytecode_errors_are_clear() -> None:
    with pytest.raises(BytecodeError, match="not a Lua chunk"):
        global_accesses(b"print")
    with pytest.raises(BytecodeError, match=r"not 5\.1"):
        global_accesses(b"\x1bLua\x52\x00\x01\x04\x08\x04\x08\x00")
    with pytest.raises(BytecodeError, match="truncated"):
        global_accesses(b"\x1bLua\x51\x00\x01\x04\x08\x04\x08\x00\x01")


# --- locating names: statements whose instruction lands on another line -------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("x, y = y, x\nreturn 1", [(1, "read", "y"), (1, "read", "x"), (1, "write", "y"), (1, "write", "x")]),
        ("a,\n  b = 1,\n  2\nreturn 1", [(1, "write", "a"), (2, "write", "b")]),
        (
            "local t = {}\nt[k1], g = f(\n  1)\nreturn 1",
            [(2, "read", "k1"), (2, "read", "f"), (2, "write", "g")],
        ),
        ("local t = {a = b,\n  [c] = 1}\nreturn t", [(1, "read", "b"), (2, "read", "c")]),
        ("return foo:foo()\n  .. foo\n  :bar()", [(1, "read", "foo"), (2, "read", "foo")]),
        ("return f{\n  x = 1}, g'str', h[[\nlong]]", [(1, "read", "f"), (2, "read", "g"), (2, "read", "h")]),
        ("return (a\n  or b).c", [(1, "read", "a"), (2, "read", "b")]),
        ("local s = [[\n\n]] .. --[[ a\ncomment ]] tail\nreturn s", [(4, "read", "tail")]),
        (
            "return -\n  neg, not\n  flag, #\n  len",
            [(2, "read", "neg"), (3, "read", "flag"), (4, "read", "len")],
        ),
        ("g = function()\n  return 1\nend\nreturn 1", [(1, "write", "g")]),
        (
            "local function f() end\nf(\n  arg1,\n  arg2)\nreturn 1",
            [(3, "read", "arg1"), (4, "read", "arg2")],
        ),
        ("for i = lo,\n  hi do end\nreturn 1", [(1, "read", "lo"), (2, "read", "hi")]),
        ("for k, v in\n  pairs(t) do end\nreturn 1", [(2, "read", "t")]),
        ("local x = 1\nx =\n  y\nreturn x", [(3, "read", "y")]),
    ],
)
def test_names_are_located_exactly(body: str, expected: list[tuple[int, str, str]]) -> None:
    mod = luaimport.loads(f"--@function f\n{body}\n", "loc", "loc.lua")
    problems = luaimport.check(mod)
    got = sorted((p.lineno - 1, "write" if p.write else "read", p.name) for p in problems)  # type: ignore[attr-defined]
    assert got == sorted(expected)
