"""Eviction: between luaimport calls, another client EVALs 1,000 distinct throwaway scripts.

Redis 8 and Valkey 8+ keep at most 500 scripts that reached their cache only through EVAL and
evict the oldest (INFO ``evicted_scripts``); a server with a ``maxmemory-scripts`` setting gets
a small limit.  Every luaimport call succeeds, each ran once, and a script that only luaimport
sent is never evicted.  Each round also binds a new script that someone else first ran with
EVAL: Redis 8.2 keeps such a script on its eviction list, so its next call heals.
"""

from __future__ import annotations

from typing import Any

import redis

import luaimport

from ._support import Ledger, command_calls, counting, record, server_name, size

ROUNDS = size(ci=4, full=30)
THROWAWAY = 1_000  # distinct scripts EVALed by the other client between the calls of two rounds
CALLS = size(ci=20, full=100)  # calls of each function in a round

STAMP = """\
--@function stamp
-- Reply with the call's own key and id: a script that another client also runs with EVAL.
--@keys key
--@args id
return {ARGV[1], KEYS[1]}
"""


def test_eviction(server_kwargs: dict[str, Any]) -> None:
    count = counting().count
    keys = ["evict:n", "evict:runs"]
    client = redis.Redis(**server_kwargs)
    other = redis.Redis(**server_kwargs)
    client.delete(*keys)
    client.config_resetstat()
    limit = other.config_get("maxmemory-scripts")
    if limit:  # newer Valkey: a small memory limit for scripts as well
        other.config_set("maxmemory-scripts", "64kb")
    evicted_before = client.info("stats").get("evicted_scripts")
    ledger = Ledger()
    stamp_missing = stamp_calls = count_missing = other_evals = 0  # stamp: a bound script Redis 8 evicts
    try:
        for r in range(ROUNDS):
            # a new script each round: someone runs its text with EVAL, then luaimport binds it
            stamp = luaimport.loads(f"{STAMP}-- round {r}\n", f"reliability.stamp{r}").stamp
            other.eval(stamp.script, 1, "evict:other", "x")
            other_evals += 1
            luaimport.bind(client, stamp)
            with other.pipeline(transaction=False) as pipe:
                for i in range(THROWAWAY):
                    pipe.eval(f"return 'throwaway {r}.{i}'", 0)
                pipe.execute()
            count_loaded, stamp_loaded = client.script_exists(count.sha, stamp.sha)
            # count's text only ever reached the cache through luaimport: SCRIPT LOAD, then EVAL
            count_missing += not count_loaded and r > 0
            stamp_missing += not stamp_loaded
            for i in range(CALLS):
                call_id = f"{r}.{i}"
                try:
                    ledger.ok(call_id, count(client, keys, [call_id]))
                except Exception as exc:
                    ledger.fail(call_id, exc)
                reply = stamp(client, key="evict:s", id=call_id)  # fails the test if it raises
                assert reply == [call_id.encode(), b"evict:s"]
                stamp_calls += 1
    finally:
        if limit:
            other.config_set("maxmemory-scripts", limit["maxmemory-scripts"])
    evicted_after = client.info("stats").get("evicted_scripts")
    heals = command_calls(client, "eval") - other_evals - ROUNDS * THROWAWAY
    runs, counter = client.hgetall("evict:runs"), int(client.get("evict:n") or 0)
    figures = ledger.settle(runs, counter, unknown=lambda e: False)
    evicted = None if evicted_after is None else int(evicted_after) - int(evicted_before)
    record(
        "eviction",
        server_name(client),
        throwaway_evals=ROUNDS * THROWAWAY,
        calls=figures["acknowledged"] + figures["failed"] + stamp_calls,
        evicted_scripts=evicted,
        maxmemory_scripts=bool(limit),
        heals=heals,
        stamp_missing=stamp_missing,
        count_missing=count_missing,
        **figures,
    )
    client.close()
    other.close()
    assert ledger.failed == {}, f"failed calls: {ledger.errors().most_common(5)}"
    assert count_missing == 0  # loaded by SCRIPT LOAD before any EVAL of it: never evicted
    if evicted is not None:  # a server that evicts: it really did, all but the 500 newest
        assert evicted >= ROUNDS * THROWAWAY - 500
