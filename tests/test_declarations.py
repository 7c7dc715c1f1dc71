"""Declared keys and arguments (``--@keys``, ``--@args``): keyword calls, counts, signatures.

The modules live in ``tests/fixtures/decl/``.  Every call that should fail
is checked to fail before anything reaches the server (no EVALSHA in
``INFO commandstats``).
"""

from __future__ import annotations

import inspect
import pydoc
from typing import Any

import pytest
import redis
from _clients import KIND_IDS, KINDS_AND_BACKENDS, Runner

import luaimport
from luaimport import LuaArgumentError

pytestmark = pytest.mark.usefixtures("import_state")


def script_runs(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


# --- the keyword form --------------------------------------------------------


def test_keyword_call_sends_the_declared_order(client: redis.Redis) -> None:
    from decl import moves

    client.mset({"a": 10, "b": 0})
    assert moves.move(client, dst="b", src="a", amount=3) == [7, 2, 1]
    assert client.mget("a", "b") == [b"7", b"3"]


def test_keyword_and_plain_forms_run_the_same_script(client: redis.Redis) -> None:
    from decl import moves

    assert moves.echo(client, first="k1", rest=["k2", "k3"], tag="t") == [[b"k1", b"k2", b"k3"], [b"t"]]
    assert moves.echo(client, ["k1", "k2", "k3"], ["t"]) == [[b"k1", b"k2", b"k3"], [b"t"]]


def test_keys_and_args_keywords_still_name_the_lists(client: redis.Redis) -> None:
    from decl import moves

    client.mset({"a": 1, "b": 1})
    assert moves.move(client, keys=["a", "b"], args=[1]) == [0, 2, 1]


def test_optional_argument_left_out_makes_argv_shorter(client: redis.Redis) -> None:
    from decl import moves

    client.mset({"a": 5, "b": 0})
    assert moves.move(client, src="a", dst="b", amount=1) == [4, 2, 1]
    assert client.ttl("b") == -1
    assert moves.move(client, src="a", dst="b", amount=1, ttl=100) == [3, 2, 2]
    assert 0 < client.ttl("b") <= 100


def test_optional_argument_given_as_none_is_left_out(client: redis.Redis) -> None:
    from decl import moves

    client.mset({"a": 5, "b": 0})
    assert moves.move(client, src="a", dst="b", amount=1, ttl=None) == [4, 2, 1]


def test_variadic_name_takes_a_list_and_may_be_empty(client: redis.Redis) -> None:
    from decl import moves

    assert moves.echo(client, first="k", tag="t") == [[b"k"], [b"t"]]
    assert moves.echo(client, first="k", rest=("x",), tag="t") == [[b"k", b"x"], [b"t"]]


def test_undeclared_keys_go_as_a_list_beside_declared_args(client: redis.Redis) -> None:
    from decl import moves

    assert moves.only_args(client, ["k"], a=1, b="two") == [[b"k"], [b"1", b"two"]]
    assert moves.only_args(client, a=1, b=2) == [[], [b"1", b"2"]]


def test_markerless_module_declares_in_its_leading_comments(client: redis.Redis) -> None:
    from decl import single

    assert single.__doc__ == "A single script with declarations in its leading comment block."
    assert single(client, key="k", value="v") == [b"k", b"v"]
    assert single(client, ["k"], ["v"]) == [b"k", b"v"]
    with pytest.raises(LuaArgumentError, match=r"decl\.single\(\) missing arg 'value'"):
        single(client, key="k")


@pytest.mark.parametrize("runner", KINDS_AND_BACKENDS, indirect=True, ids=KIND_IDS)
def test_keyword_calls_on_every_client_kind(runner: Runner) -> None:
    from decl import moves

    def echo(client: Any, keys: Any, args: Any) -> Any:
        return moves.echo(client, first="{t}1", rest=["{t}2"], tag="x")

    assert runner.call(echo) == [[b"{t}1", b"{t}2"], [b"x"]]


# --- mistakes, caught before anything is sent -------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, c: m.move(c, src="a", amount=1), r"decl\.moves\.move\(\) missing key 'dst'$"),
        (lambda m, c: m.move(c, src="a"), r"missing key 'dst' and arg 'amount'$"),
        (
            lambda m, c: m.move(c, src="a", dts="b", amount=1),
            r"move\(\) missing key 'dst'; got unexpected keyword argument 'dts' \(did you mean 'dst'\?\)",
        ),
        (
            lambda m, c: m.move(c, src="a", dst="b", amount=1, ttl=5, tll=5),
            r"unexpected keyword argument 'tll' \(did you mean 'ttl'\?\) "
            r"\(declared: keys src dst; args amount ttl\?\)",
        ),
        (lambda m, c: m.move(c, ["a"], [1]), r"move\(\) takes 2 keys \(src dst\), got 1"),
        (lambda m, c: m.move(c, ["a", "b"], []), r"move\(\) takes 1 to 2 args \(amount ttl\?\), got 0"),
        (lambda m, c: m.move(c, ["a", "b"], [1, 2, 3]), r"takes 1 to 2 args .*, got 3"),
        (lambda m, c: m.echo(c, [], ["t"]), r"echo\(\) takes at least 1 keys \(first rest\.\.\.\), got 0"),
        (lambda m, c: m.echo(c, first="a", rest="bc", tag="t"), r"rest\.\.\. takes a list or tuple, not str"),
        (
            lambda m, c: m.move(c, ["a", "b"], src="a", dst="b", amount=1),
            r"keys given both as a list and by name",
        ),
        (lambda m, c: m.no_keys(c, ["k"], [1]), r"no_keys\(\) takes 0 keys \(none\), got 1"),
        (lambda m, c: m.plain(c, key="a"), r"unexpected keyword argument 'key'"),
        (lambda m, c: m.move(c, src=["a"], dst="b", amount=1), r"keys\[0\] is \['a'\] \(list\)"),
    ],
)
def test_bad_calls_are_type_errors_before_any_network_call(
    client: redis.Redis, call: Any, message: str
) -> None:
    from decl import moves

    client.config_resetstat()
    with pytest.raises(TypeError, match=message):
        call(moves, client)
    assert script_runs(client) == 0


def test_optional_argument_cannot_be_skipped_over() -> None:
    m = luaimport.loads("--@function f\n--@args a? b?\nreturn ARGV\n", "m")
    with pytest.raises(LuaArgumentError, match=r"'b' given without 'a': args are positional in Lua"):
        m.f(None, b=1)


# --- what Python sees ----------------------------------------------------------


def test_signature_shows_the_declared_names() -> None:
    from decl import moves

    assert str(inspect.signature(moves.move)) == (
        "(client, *, src: str | bytes, dst: str | bytes, amount: str | bytes | int | float, "
        "ttl: str | bytes | int | float = None) -> Any"
    )
    assert str(inspect.signature(moves.echo)).startswith(
        "(client, *, first: str | bytes, rest: collections.abc.Sequence[str | bytes] = (), tag:"
    )
    assert "keys" in inspect.signature(moves.plain).parameters  # undeclared: the plain form


def test_help_shows_the_keyword_form_then_the_doc() -> None:
    from decl import moves

    text = pydoc.render_doc(moves.move, renderer=pydoc.plaintext)
    assert "move(client, *, src: str | bytes, dst: str | bytes, amount:" in text
    assert "Also move(client, keys, args)" in text
    assert "Move ARGV amount from counter src to counter dst" in text


def test_declared_function_is_still_a_lua_function() -> None:
    from decl import moves

    assert isinstance(moves.move, luaimport.LuaFunction)
    assert moves.move.script == moves.move.linked.script  # the same linking, the same SHA rules


# --- vararg only where the body uses ... --------------------------------------


def test_function_is_vararg_only_when_its_body_uses_dots() -> None:
    from decl import vararg

    assert "= function(KEYS, ARGV, ...)\n" in vararg.caller.script  # spread, the callee, uses ...
    assert "= function(KEYS, ARGV)\n" in vararg.caller.script  # caller does not
    assert "..." not in vararg.leaf.script


def test_extra_call_arguments_still_reach_a_vararg_callee(client: redis.Redis) -> None:
    from decl import vararg

    assert vararg.caller(client) == [2, b"x", b"y"]


def test_no_hidden_arg_table_in_a_function_without_dots(client: redis.Redis) -> None:
    from decl import vararg

    with pytest.raises(luaimport.LuaError, match="nonexistent global variable 'arg'") as info:
        vararg.leaf(client)
    assert info.value.lineno == 2
