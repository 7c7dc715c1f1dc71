"""Cost of a linked CALL inside the server, against hand-written Lua and lua_call's registry.

Run: bash bench/run  (writes docs/benchmarks-nested.md).  Not a test: it asserts nothing.
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

import platform
import statistics
from collections.abc import Callable

import _common
import redis

import luaimport

ROUNDS, N = 9, 50_000
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


def server_name(client: redis.Redis) -> str:
    info = client.info("server")
    if "valkey_version" in info:
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info['redis_version']}"


def measure(client: redis.Redis) -> dict[str, list[float]]:
    """ns per iteration of each variant, one list of rounds each."""
    mod = luaimport.loads(LINKED, "bench_nested")
    luaimport.bind(client, mod)
    local, inlined = client.script_load(LOCAL), client.script_load(INLINED)
    runs: dict[str, Callable[[], object]] = {
        "local": lambda: client.evalsha(local, 0, N),
        "linked": lambda: mod.loop(client, [], [N]),
        "inlined": lambda: client.evalsha(inlined, 0, N),
    }
    try:
        sha = client.script_load(REGISTRY_LEAF)
        client.hset(":registry", "leaf", sha)
        registry = client.script_load(REGISTRY_LOOP)
        client.evalsha(registry, 0, 1)  # raises where scripts cannot reach f_<sha> (Redis 7+, Valkey)
        runs["registry"] = lambda: client.evalsha(registry, 0, N)
    except redis.ResponseError:
        pass
    rounds = _common.interleaved(list(runs.values()), ROUNDS, 1)  # µs per EVAL of N iterations
    samples = {name: [us * 1e3 / N for us in times] for name, times in zip(runs, rounds, strict=True)}
    return samples


def ratio(samples: dict[str, list[float]], top: str, bottom: str, minus: str | None = None) -> str:
    """Median and range of per-round ratios ``(top - minus) / (bottom - minus)``."""
    base = samples[minus] if minus else [0.0] * ROUNDS
    ratios = sorted((t - b0) / (u - b0) for t, u, b0 in zip(samples[top], samples[bottom], base, strict=True))
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f} to {ratios[-1]:.2f})"


def main() -> int:
    rows = []
    for name, server in _common.servers():
        with server as client:
            samples, shown = measure(client), server_name(client)
        ns = {variant: statistics.median(times) for variant, times in samples.items()}
        registry = f"{ns['registry']:.0f}" if "registry" in ns else "fails (no f_<sha>)"
        mechanism = ratio(samples, "registry", "linked", minus="inlined") if "registry" in samples else "n/a"
        loops = " | ".join(f"{ns[variant]:.0f}" for variant in ("inlined", "local", "linked"))
        rows.append(
            f"| {shown} ({name}) | {loops} | {registry} | {ratio(samples, 'linked', 'local')} | {mechanism} |"
        )
    lines = [
        "# Nested calls inside the server",
        "",
        f"Command: `bash bench/run` (Python {platform.python_version()}, {platform.machine()}, "
        f"servers on unix sockets; a loop of {N:,} calls per EVAL, median of {ROUNDS} interleaved rounds).",
        "",
        "ns per loop iteration. *linked / local*: a `CALL.leaf({}, {i})` against a call of a",
        "hand-written local function [target: at most 1.2x]. *registry / linked mechanism*: what",
        "lua_call's registry call costs beyond the inlined loop, against what a linked call costs",
        "beyond it [target: at least 10x], where the registry still works (Redis 6.2).",
        "",
        "| server | inlined | local | linked | registry | linked / local | registry / linked mechanism |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    _common.write("benchmarks-nested.md", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
