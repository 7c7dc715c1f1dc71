"""Cost of a linked CALL inside the server, against hand-written Lua and lua_call's registry.

Each variant is one EVAL that loops N times over a call of a one-line function
(``return ARGV[1]``), timed from the client; the EVAL's own round trip is a few
microseconds against milliseconds of loop.  Per server, the variants take turns
within every round, and each figure is the median over rounds of per-round ratios.

- local: the callee as a hand-written ``local function leaf(KEYS, ARGV)``;
- linked: luaimport's ``CALL.leaf({}, {i})``, as the linker builds it;
- inlined: the same loop with the callee's body written in place (the tables
  the call takes are still built): what the loop costs with no call at all;
- registry: lua_call 0.10's mechanism (2014), which only Redis 6.2 still runs:
  push the arguments onto ARGV, ``HGET`` the callee's SHA from a registry hash,
  call the global ``f_<sha>``; the callee pops its arguments back off ARGV.

The mechanism's own cost is a variant's loop minus the inlined loop.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable

import _common
import redis

import luaimport

LINKED = """
--@function leaf
return ARGV[1]

--@function loop
for i = 1, tonumber(ARGV[1]) do
  local r = CALL.leaf({}, {i})
end
return 1
"""
LOCAL = """
local function leaf(KEYS, ARGV) return ARGV[1] end
for i = 1, tonumber(ARGV[1]) do
  local r = leaf({}, {i})
end
return 1
"""
INLINED = """
for i = 1, tonumber(ARGV[1]) do
  local keys, argv = {}, {i}
  local r = argv[1]
end
return 1
"""
#: the callee as lua_call 0.10 rewrote it: its arguments come on top of the caller's ARGV
REGISTRY_LEAF = """
local _KEYS, _ARGV
if #ARGV == 0 or type(ARGV[#ARGV]) == 'string' then
  _KEYS, _ARGV = KEYS, ARGV
else
  _KEYS, _ARGV = ARGV[#ARGV][1], ARGV[#ARGV][2]
  table.remove(ARGV)
end
return _ARGV[1]
"""
REGISTRY_LOOP = """
for i = 1, tonumber(ARGV[1]) do
  table.insert(ARGV, {{}, {i}})
  local r = _G['f_' .. redis.call('HGET', ':registry', 'leaf')]()
end
return 1
"""


def measure(client: redis.Redis, rounds: int, n: int) -> dict[str, list[float]]:
    """ns per iteration of each variant, one list of rounds each."""
    mod = luaimport.loads(LINKED, "bench_nested")
    luaimport.bind(client, mod)
    local, inlined = client.script_load(LOCAL), client.script_load(INLINED)
    runs: dict[str, Callable[[], object]] = {
        "local": lambda: client.evalsha(local, 0, n),
        "linked": lambda: mod.loop(client, [], [n]),
        "inlined": lambda: client.evalsha(inlined, 0, n),
    }
    try:
        sha = client.script_load(REGISTRY_LEAF)
        client.hset(":registry", "leaf", sha)
        registry = client.script_load(REGISTRY_LOOP)
        client.evalsha(registry, 0, 1)  # raises where scripts cannot reach f_<sha> (Redis 7+, Valkey)
        runs["registry"] = lambda: client.evalsha(registry, 0, n)
    except redis.ResponseError:
        pass
    rounds_us = _common.interleaved(list(runs.values()), rounds, 1)  # µs per EVAL of n iterations
    return {name: [us * 1e3 / n for us in times] for name, times in zip(runs, rounds_us, strict=True)}


def section(quick: bool = False) -> list[str]:
    rounds, n = (2, 100) if quick else (31, 50_000)
    rows = []
    for _, binary in _common.binaries():
        with _common.server(binary) as url:
            client = redis.Redis.from_url(url)
            samples, name = measure(client, rounds, n), _common.server_name(client)
            client.close()
        ns = {variant: statistics.median(times) for variant, times in samples.items()}
        linked = _common.ratios(samples["linked"], samples["local"])
        _common.figure(
            f"(d) linked CALL loop / local functions, {name}",
            _common.spread(linked, digits=2),
            "<= 1.2x",
            _common.judged(linked, 1.2),
        )
        mechanism = "n/a (no f_<sha> on this server)"
        if "registry" in ns:
            # medians first: the linked mechanism is a few ns, so a per-round difference is mostly noise
            times = (ns["registry"] - ns["inlined"]) / (ns["linked"] - ns["inlined"])
            mechanism = f"{times:.0f}x"
            _common.figure(
                f"(d) registry mechanism / linked mechanism, {name}", mechanism, ">= 10x", times >= 10
            )
        cells = " | ".join(f"{ns[variant]:.0f}" for variant in ("inlined", "local", "linked"))
        registry = f"{ns['registry']:.0f}" if "registry" in ns else "fails (no f_<sha>)"
        rows.append(f"| {name} | {cells} | {registry} | {_common.spread(linked, digits=2)} | {mechanism} |")
    return [
        "## (d) Nested calls inside the server",
        "",
        f"Each variant is one EVAL looping {n:,} times over a call of `return ARGV[1]`; {rounds} rounds, the "
        "variants taking turns; ns per iteration (median).  *inlined*: the callee's body written in place "
        "(the tables a call takes are still built); *local*: a hand-written `local function`; *linked*: "
        "`CALL.leaf({}, {i})` as luaimport links it; *registry*: lua_call 0.10's mechanism (2014), which "
        "only Redis 6.2 still runs: arguments pushed onto ARGV, `HGET` of the callee's SHA from a "
        "registry hash, a call of the global `f_<sha>`.",
        "",
        "*linked / local*: per-round ratio [target: at most 1.2x].  *registry / linked mechanism*: what "
        "the registry call costs beyond the inlined loop against what a linked call costs beyond it, "
        "from the medians [target: at least 10x].",
        "",
        "| server | inlined | local | linked | registry | linked / local | registry / linked mechanism |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


if __name__ == "__main__":
    print("\n".join(section("--quick" in sys.argv)))
