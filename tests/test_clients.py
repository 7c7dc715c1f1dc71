"""The same behaviour through every kind of client: direct, asyncio, pipelines, transactions, cluster.

Each test runs once per kind in ``_clients.KINDS`` and per backend, against
the server under test (a single server, or a 3-primary cluster of the same
binary).  On the scripts backend, scripts start out absent from every
server, so each test also covers the first-call load; on the Functions
backend, the runner deploys each module with ``bind(..., backend="functions")``
before its first call (Redis 6.2, which has no Functions, skips those).
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import redis
from _clients import KIND_IDS, KINDS_AND_BACKENDS, Runner

import luaimport
from luaimport import LuaArgumentError, LuaError, LuaSyntaxError

pytestmark = [
    pytest.mark.usefixtures("import_state"),
    pytest.mark.parametrize("runner", KINDS_AND_BACKENDS, indirect=True, ids=KIND_IDS),
]

KINDS_LUA = Path(__file__).parent / "fixtures" / "errs" / "kinds.lua"

# kind -> (line in kinds.lua, function, error code)
RUNTIME_ERRORS = {
    "explicit": (8, "errs.kinds.explicit", "ERR"),
    "index_nil": (12, "errs.kinds.index_nil", "ERR"),
    "wrongtype": (20, "errs.kinds.wrongtype", "WRONGTYPE"),
    "read_global": (30, "errs.kinds.read_global", "ERR"),
    "prelude_helper": (3, "errs.kinds.<prelude>", "ERR"),
}


def test_results_and_the_lua_call_example(runner: Runner) -> None:
    import lipkg.basic as basic

    assert runner.call(basic.return_args, [], [1, 2, 3]) == [b"1", b"2", b"3"]
    assert runner.call(basic.call_return, [], [4, 5, 6]) == [1, 2, 3, [b"4", b"5", b"6"]]
    assert runner.call(basic.types) == [b"table", b"number", b"true", b"false", 8, 2]


def test_calls_across_modules_and_recursion(runner: Runner) -> None:
    import lipkg.basic as basic
    import lipkg.parity_even as even
    import lipkg.uses_single as uses

    assert runner.call(even.start, [], [11]) == 0
    assert runner.call(basic.factorial, [], [10]) == 3628800
    assert runner.call(uses.incr_twice, ["{c}counter"], [3]) == 6
    assert runner.call(uses.incr_twice, ["{c}counter"], [1]) == 8


def test_many_calls_in_one_go_keep_their_order(runner: Runner) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    calls = [(single, [f"{{n}}{i % 3}"], [i]) for i in range(30)]
    calls.insert(7, (basic.factorial, [], [5]))
    results = runner.calls(calls)
    expected = [sum(j for j in range(i + 1) if j % 3 == i % 3) for i in range(30)]
    expected.insert(7, 120)
    assert results == expected


@pytest.mark.parametrize("kind", sorted(RUNTIME_ERRORS))
def test_runtime_errors_are_located_in_the_lua_source(runner: Runner, kind: str) -> None:
    import errs.entry as entry

    lineno, function, code = RUNTIME_ERRORS[kind]
    with pytest.raises(LuaError) as info:
        runner.call(entry.run, ["{errs}key"], [kind])
    err = info.value
    assert (err.filename, err.lineno, err.function, err.code) == (str(KINDS_LUA), lineno, function, code)
    assert str(err).startswith(f"{KINDS_LUA}:{lineno} in {function}: ")
    last = traceback.extract_tb(err.__traceback__)[-1]
    assert (last.filename, last.lineno, last.name) == (str(KINDS_LUA), lineno, function)


def test_errors_among_results_are_located_without_raising(runner: Runner) -> None:
    import errs.entry as entry
    import lipkg.basic as basic

    results = runner.calls(
        [
            (basic.return_args, [], ["before"]),
            (entry.run, ["{errs}key"], ["index_nil"]),
            (basic.return_args, [], ["after"]),
        ],
        raise_on_error=False,
    )
    assert results[0] == [b"before"]
    assert results[2] == [b"after"]
    assert isinstance(results[1], LuaError)
    assert (results[1].filename, results[1].lineno) == (str(KINDS_LUA), 12)


def test_first_error_raised_with_raise_on_error(runner: Runner) -> None:
    import errs.entry as entry
    import lipkg.basic as basic

    with pytest.raises(LuaError) as info:
        runner.calls(
            [
                (basic.return_args, [], ["x"]),
                (entry.run, ["{errs}k"], ["explicit"]),
                (entry.run, [], ["nope"]),
            ]
        )
    assert info.value.lineno == 8
    if runner.pipelined:
        assert "(command #2 of the pipeline)" in info.value.__notes__


def test_compile_errors_are_syntax_errors_at_the_lua_line(runner: Runner) -> None:
    mod = luaimport.loads("--@function f\nlocal a = 1\nlocal b = = 2\n", "cbad", "cbad.lua")
    with pytest.raises(LuaSyntaxError) as info:
        runner.call(mod.f)
    assert (info.value.filename, info.value.lineno, info.value.text) == ("cbad.lua", 3, "local b = = 2")


def test_bad_arguments_fail_before_anything_is_queued_or_sent(runner: Runner) -> None:
    import lipkg.basic as basic

    target = runner.pipeline() if runner.pipelined else runner.client
    with pytest.raises(LuaArgumentError, match=r"args\[0\] is None"):
        basic.identity(target, [], [None])
    if runner.pipelined:
        assert len(target) == 0


def test_errors_without_a_script_position_keep_their_class(runner: Runner) -> None:
    replier = luaimport.loads("--@function f\nreturn redis.error_reply('READONLY pretend')\n", "replier")
    with pytest.raises(runner.library.exceptions.ReadOnlyError) as info:
        runner.call(replier.f)
    assert not isinstance(info.value, LuaError)


def test_bind_then_call(runner: Runner) -> None:
    import lipkg.basic as basic

    if runner.pipelined:
        with pytest.raises(TypeError, match="not a pipeline"):
            luaimport.bind(runner.pipeline(), basic, backend=runner.backend)
        return
    loaded = runner.run(luaimport.bind(runner.client, basic, backend=runner.backend))
    if runner.backend == "functions":
        assert loaded["lipkg.basic.factorial"] == basic.factorial.function_name
        assert basic.factorial.function_name.startswith(basic.factorial.library.name + "__")
    else:
        assert loaded["lipkg.basic.factorial"] == basic.factorial.sha
    assert runner.call(basic.factorial, [], [4]) == 24


def test_calls_run_as_their_backend_says(runner: Runner, server_kwargs: dict[str, object]) -> None:
    import lipkg.basic as basic
    import lipkg.single as single

    nodes = [redis.Redis(**server_kwargs)]  # type: ignore[arg-type]
    if runner.cluster:
        nodes = [redis.Redis(host="127.0.0.1", port=port) for port in runner.ports()]
    try:
        runner.calls([(basic.factorial, [], [3]), (single, ["{n}x"], [1])])  # deploy and load first
        for node in nodes:
            node.config_resetstat()
        assert runner.calls([(basic.factorial, [], [4]), (single, ["{n}x"], [1])]) == [24, 2]
        ran = {name: sum(calls(node, name) for node in nodes) for name in ("fcall", "evalsha", "eval")}
    finally:
        for node in nodes:
            node.close()
    if runner.backend == "functions":
        assert ran == {"fcall": 2, "evalsha": 0, "eval": 0}
    else:  # (a keyless call on a cluster may land on a primary that has not loaded it yet: EVAL)
        assert (ran["fcall"], ran["evalsha"]) == (0, 2)


def calls(node: redis.Redis, command: str) -> int:
    return int(node.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
