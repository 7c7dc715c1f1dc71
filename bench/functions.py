"""What building inside the callback costs per call, on the Functions backend.

A luaimport library builds its function's prelude and body inside the
callback on every call (the reply guard, the CALL table, the module's
prelude, a closure per function linked in), as EVAL does for a script.
A hand-written library of the same bodies registers them directly and
builds its prelude once, at load.  Both are called with raw FCALLs here, so
the difference is that building and nothing of Python's; EVALSHA of the
same luaimport function gives the script backend's figure beside them.

Two measures, on a unix socket, on each server found that has Functions:

- server time per call, ``usec_per_call`` from ``INFO commandstats``, over
  pipelines of calls: the cost of the Lua itself, without the round trip;
- round trip per call as a client sees it, one call at a time, in
  interleaved rounds (the median per function).

The cluster figures of both backends are bench/cluster_calls.py's.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

import _common
import redis

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
    ]


if __name__ == "__main__":
    print("\n".join(section("--quick" in sys.argv)))
