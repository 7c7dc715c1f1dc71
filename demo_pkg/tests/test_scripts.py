"""demo_pkg's own tests, written as a user of luaimport writes them: with its pytest plugin.

conftest.py enables the plugin and pytest.ini names demo_pkg in
``luaimport_packages``: ``luaimport_client`` is then a client on the
plugin's embedded Valkey (or the ``--luaimport-url`` server) with every
demo_pkg script bound, and each test starts with an empty keyspace.
"""

from __future__ import annotations

import json
import time
import types

import pytest
import redis

import luaimport
from demo_pkg import counters, queue, ratelimit, slide

Client = redis.Redis


def test_every_demo_script_is_bound_before_any_call(
    luaimport_client: Client, luaimport_modules: list[types.ModuleType]
) -> None:
    import demo_pkg

    assert luaimport_modules == [demo_pkg]
    modules = (counters, queue, ratelimit, slide)
    assert [info.name for info in luaimport.iter_modules(demo_pkg)] == [m.__name__ for m in modules]
    shas = [f.sha for m in modules for f in luaimport.lua_functions(m)]
    assert len(shas) == 10
    assert luaimport_client.script_exists(*shas) == [True] * 10


def test_counters_by_name_and_as_lists(luaimport_client: Client) -> None:
    assert counters.incr(luaimport_client, counter="hits") == 1
    assert counters.incr(luaimport_client, counter="hits", by=41) == 42
    assert counters.incr_many(luaimport_client, ["a", "b", "hits"], [2]) == [2, 2, 44]
    assert counters.get(luaimport_client, counters=["a", "hits", "never"]) == [2, 44, 0]


def test_each_test_starts_with_an_empty_keyspace(luaimport_client: Client) -> None:
    assert luaimport_client.dbsize() == 0
    assert counters.incr(luaimport_client, counter="hits") == 1  # not 45: the test above was flushed


def test_counters_refuse_a_non_integer_at_the_lua_line(luaimport_client: Client) -> None:
    with pytest.raises(luaimport.LuaError) as info:
        counters.incr(luaimport_client, counter="hits", by="lots")
    assert (info.value.filename, info.value.lineno) == (counters.__file__, 13)
    assert "amount must be an integer, got lots" in str(info.value)
    with pytest.raises(luaimport.LuaArgumentError, match="did you mean 'counter'"):
        counters.incr(luaimport_client, countr="hits")


def test_ratelimit_takes_tokens_until_the_bucket_is_empty(luaimport_client: Client) -> None:
    taken = [ratelimit.allow(luaimport_client, bucket="b", capacity=3, rate=1) for _ in range(4)]
    assert taken == [1, 1, 1, 0]
    assert ratelimit.remaining(luaimport_client, bucket="b", capacity=3, rate=1) == 0
    assert ratelimit.remaining.readonly
    assert ratelimit.allow(luaimport_client, bucket="b", capacity=3, rate=1, cost=5) == 0
    assert 0 < luaimport_client.pttl("b") <= 3001  # refills in at most capacity / rate seconds


def test_queue_push_claim_ack_and_requeue(luaimport_client: Client) -> None:
    jobs = ["{q}:pending", "{q}:processing", "{q}:leases"]
    ids = queue.push(luaimport_client, pending=jobs[0], ids="{q}:ids", payloads=["a", "b", "c"])
    assert ids == [1, 2, 3]
    first = queue.claim(luaimport_client, jobs, [30_000])
    assert json.loads(first) == {"id": 1, "body": "a"}
    assert queue.ack(luaimport_client, processing=jobs[1], leases=jobs[2], item=first) == 1
    assert queue.ack(luaimport_client, processing=jobs[1], leases=jobs[2], item=first) == 0
    second = queue.claim(luaimport_client, jobs, [20])
    time.sleep(0.05)
    assert queue.requeue_expired(luaimport_client, jobs) == 1
    assert queue.claim(luaimport_client, jobs, [30_000]) == second  # the expired item comes back first
    assert counters.get(luaimport_client, ["{q}:ids"]) == [3]


def test_queue_claim_on_an_empty_queue(luaimport_client: Client) -> None:
    assert queue.claim(luaimport_client, ["{q}:pending", "{q}:processing", "{q}:leases"], [1000]) is None


def test_slide_allows_limit_requests_per_window(luaimport_client: Client) -> None:
    replies = [slide(luaimport_client, log="w", window_ms=1000, limit=2) for _ in range(3)]
    assert [allowed for allowed, _, _ in replies] == [1, 1, 0]
    assert replies[-1][1] == 2
    assert 0 < replies[-1][2] <= 1000
