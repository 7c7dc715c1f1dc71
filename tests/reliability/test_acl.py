"""ACL: luaimport under a restricted user, and under users that lack SCRIPT or EVAL.

The restricted user gets what luaimport needs and nothing else: EVALSHA and EVAL (and their
``_RO`` forms, on servers that have them), SCRIPT LOAD and SCRIPT EXISTS, plus the data commands
the scripts run, on the keys they use.  A user without SCRIPT still gets every call through,
since a heal's EVAL carries the text; a user without EVAL gets the server's NOPERM error from
the call that heals, unchanged, and the script did not run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from _cluster import Cluster
from redis.cluster import RedisCluster

import luaimport

from ._support import command_calls, counting, record, server_name

PEEK = """\
--@function peek
-- Read a counter.
--@keys counter
--@readonly
return redis.call('GET', KEYS[1])
"""

KEYS = ["acl:n", "acl:runs"]
#: what the counting and peek scripts run, on the keys they use
DATA = ["~acl:*", "+incr", "+hincrby", "+get"]
SCRIPT = ["+script|load", "+script|exists"]


def runs_commands(flags: bool) -> list[str]:
    """EVALSHA and EVAL, and their read-only forms where the server has them (not Redis 6.2)."""
    return ["+evalsha", "+eval", *(["+evalsha_ro", "+eval_ro"] if flags else [])]


@pytest.fixture
def flags(client: redis.Redis) -> bool:
    """Whether the server has script flags and the ``_RO`` commands (Redis 7+, Valkey)."""
    return not str(client.info("server")["redis_version"]).startswith("6.")


@pytest.fixture
def make_user(client: redis.Redis, server_kwargs: dict[str, Any]) -> Iterator[Callable[..., redis.Redis]]:
    """``make_user(name, rules)``: an ACL user with exactly ``rules``, and a client logged in as it."""
    made: list[tuple[str, redis.Redis]] = []

    def make(name: str, rules: list[str]) -> redis.Redis:
        client.execute_command("ACL", "SETUSER", name, "reset", "on", ">secret", *rules)
        user = redis.Redis(username=name, password="secret", **server_kwargs)
        made.append((name, user))
        return user

    yield make
    for name, user in made:
        user.close()
        client.execute_command("ACL", "DELUSER", name)
    client.delete(*KEYS)


def test_a_restricted_user_calls_heals_and_binds(
    client: redis.Redis, make_user: Callable[..., redis.Redis], flags: bool, server_kwargs: dict[str, Any]
) -> None:
    count = counting().count
    rules = [*runs_commands(flags), *SCRIPT, *DATA]
    app = make_user("luaimport_app", rules)
    client.config_resetstat()
    assert count(app, KEYS, ["first"]) == [b"first", 1]  # a cold cache: healed
    assert count(app, KEYS, ["second"]) == [b"second", 2]
    client.script_flush()  # by the default user
    assert count(app, KEYS, ["after flush"]) == [b"after flush", 3]  # healed again
    assert command_calls(client, "eval") == 2
    assert luaimport.bind(app, count) == {"reliability.counting.count": count.sha}
    with app.pipeline(transaction=False) as pipe:  # the pipeline carries a SCRIPT LOAD
        client.script_flush()
        assert count(pipe, KEYS, ["piped"]).execute() == [[b"piped", 4]]

    async def asyncio_calls() -> list[Any]:
        aclient = redis.asyncio.Redis(username="luaimport_app", password="secret", **server_kwargs)
        try:
            client.script_flush()  # by the default user: the restricted one may not
            return [await count(aclient, KEYS, ["async"]), await luaimport.bind(aclient, count)]
        finally:
            await aclient.aclose()

    assert asyncio.run(asyncio_calls()) == [[b"async", 5], {"reliability.counting.count": count.sha}]
    if flags:  # --@readonly: EVALSHA_RO, healed by SCRIPT LOAD + EVAL_RO
        peek = luaimport.loads(PEEK, "reliability.peek").peek
        client.script_flush()
        assert peek(app, counter="acl:n") == b"5"
        assert peek(app, counter="acl:n") == b"5"

    # a key outside the user's patterns: the server's NOPERM, raised as it is, and nothing retried
    evalsha, eval_ = command_calls(client, "evalsha"), command_calls(client, "eval")
    with pytest.raises(redis.exceptions.NoPermissionError):
        count(app, ["elsewhere:n", "elsewhere:runs"], ["refused"])
    assert (command_calls(client, "evalsha"), command_calls(client, "eval")) == (evalsha, eval_)  # refused

    # redis-py's default pipeline is a transaction: that takes MULTI and EXEC too.  Without them
    # the server refuses MULTI, then runs the queued commands one by one, outside any transaction,
    # and refuses EXEC; redis-py raises the MULTI error: the call in it ran all the same.
    with pytest.raises(redis.exceptions.NoPermissionError, match="multi"):
        count(app.pipeline(), KEYS, ["in a refused transaction"]).execute()
    client.execute_command("ACL", "SETUSER", "luaimport_app", "+multi", "+exec")
    assert count(app.pipeline(), KEYS, ["in a transaction"]).execute() == [[b"in a transaction", 7]]
    calls = [
        "first",
        "second",
        "after flush",
        "piped",
        "async",
        "in a refused transaction",
        "in a transaction",
    ]
    assert client.hgetall("acl:runs") == {call.encode(): b"1" for call in calls}
    record("ACL", server_name(client), user="ACL SETUSER luaimport_app on >... " + " ".join(rules))


def test_a_user_without_script_still_heals_through_eval(
    client: redis.Redis, make_user: Callable[..., redis.Redis], flags: bool
) -> None:
    count = counting().count
    app = make_user("luaimport_noscript", [*runs_commands(flags), *DATA])
    assert count(app, KEYS, ["first"]) == [b"first", 1]  # SCRIPT LOAD refused; the EVAL ran it
    client.script_flush()
    assert count(app, KEYS, ["second"]) == [b"second", 2]
    with pytest.raises(redis.exceptions.NoPermissionError, match="script"):
        luaimport.bind(app, count)
    client.script_flush()
    with pytest.raises(redis.exceptions.NoPermissionError, match="script"):  # its SCRIPT LOAD, refused
        count(app.pipeline(transaction=False), KEYS, ["piped"]).execute()
    assert client.hgetall("acl:runs") == {b"first": b"1", b"second": b"1"}  # the piped call did not run


def test_a_user_without_eval_gets_the_servers_noperm_from_the_heal(
    client: redis.Redis, make_user: Callable[..., redis.Redis], flags: bool
) -> None:
    count = counting().count
    runs = ["+evalsha", *(["+evalsha_ro"] if flags else [])]
    app = make_user("luaimport_noeval", [*runs, *SCRIPT, *DATA])
    with pytest.raises(redis.exceptions.NoPermissionError, match="eval") as info:
        count(app, KEYS, ["missed"])  # EVALSHA missed; SCRIPT LOAD worked; the EVAL was refused
    assert not isinstance(info.value, luaimport.LuaError)  # the server's error, its class and text
    assert "(while running reliability.counting.count by its text" in " ".join(info.value.__notes__)
    assert client.hgetall("acl:runs") == {}  # it did not run
    assert count(app, KEYS, ["next"]) == [b"next", 1]  # the heal's SCRIPT LOAD went through
    client.script_flush()
    luaimport.bind(app, count)  # binding first: calls need no EVAL at all
    assert count(app, KEYS, ["bound"]) == [b"bound", 2]


def test_a_restricted_user_on_a_cluster(cluster: Cluster, flags: bool) -> None:
    """The same permissions on every node, plus what redis-py's cluster client asks at start:
    ``CLUSTER SLOTS`` (the slot map) and ``COMMAND`` (its key parser)."""
    count = counting().count
    keys = ["{acl}:n", "{acl}:runs"]
    rules = [
        *runs_commands(flags),
        *SCRIPT,
        "~{acl}:*",
        "+incr",
        "+hincrby",
        "+get",
        "+cluster|slots",
        "+command",
    ]
    for node in cluster.nodes:
        node.client.execute_command("ACL", "SETUSER", "luaimport_app", "reset", "on", ">secret", *rules)
    app = RedisCluster(host="127.0.0.1", port=cluster.port, username="luaimport_app", password="secret")
    try:
        assert count(app, keys, ["first"]) == [b"first", 1]  # healed on a cold cluster
        for node in cluster.primaries:
            node.client.script_flush()
        assert count(app, keys, ["after flush"]) == [b"after flush", 2]
        assert luaimport.bind(app, count) == {"reliability.counting.count": count.sha}
        assert count(app.pipeline(), keys, ["piped"]).execute() == [[b"piped", 3]]
    finally:
        app.close()
        for node in cluster.nodes:
            node.client.execute_command("ACL", "DELUSER", "luaimport_app")
