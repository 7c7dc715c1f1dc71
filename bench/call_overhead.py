"""(a) What a luaimport call costs against a raw EVALSHA and redis-py's ``Script``, one call at a time.

All three send the same script by SHA over the same connection, so the ratio
is what luaimport adds in Python (argument checks, the protocol core).  The
in-process figure takes the round trip away: a client whose
``execute_command`` does nothing, timed on CPU.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import _common
import redis

import luaimport

SOURCE = """
--@function leaf
return ARGV[1]

--@function nested
return CALL.leaf(KEYS, ARGV)

--@function declared
--@keys key
--@args value
return ARGV[1]
"""
TARGET = 1.03


class _NoIO(redis.Redis):
    """A client that sends nothing: what is left of a call is the Python around it."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return None


def in_process(mod: luaimport.LuaModule, rounds: int, calls: int) -> dict[str, float]:
    """CPU µs per call on a client that does no I/O: the fastest round, for each form."""
    client = _NoIO()
    sha = mod.leaf.sha
    forms = {
        "raw `client.evalsha`": lambda: client.evalsha(sha, 1, "k", "v"),
        "`mod.leaf(client, [k], [v])`": lambda: mod.leaf(client, ["k"], ["v"]),
        "`mod.declared(client, [k], [v])`": lambda: mod.declared(client, ["k"], ["v"]),
        "`mod.declared(client, key=k, value=v)`": lambda: mod.declared(client, key="k", value="v"),
    }
    times = _common.interleaved(list(forms.values()), rounds, calls, clock=time.process_time)
    return dict(zip(forms, _common.fastest(times), strict=True))


def measure(
    url: str, mod: luaimport.LuaModule, rounds: int, calls: int
) -> tuple[str, dict[str, list[float]]]:
    """The server's name, and µs per call in every round for each form of call."""
    client = redis.Redis.from_url(url)
    luaimport.bind(client, mod)
    script = client.register_script(mod.leaf.script)
    sha = mod.leaf.sha
    forms = {
        "raw `client.evalsha(sha, 1, k, v)`": lambda: client.evalsha(sha, 1, "k", "v"),
        "redis-py `Script`: `script(keys=[k], args=[v])`": lambda: script(keys=["k"], args=["v"]),
        "`mod.leaf(client, [k], [v])`": lambda: mod.leaf(client, ["k"], ["v"]),
        "`mod.nested(client, [k], [v])` (one CALL inside)": lambda: mod.nested(client, ["k"], ["v"]),
        "`mod.declared(client, key=k, value=v)`": lambda: mod.declared(client, key="k", value="v"),
    }
    try:
        return _common.server_name(client), dict(
            zip(forms, _common.interleaved(list(forms.values()), rounds, calls), strict=True)
        )
    finally:
        client.close()


def section(quick: bool = False) -> list[str]:
    rounds, calls = (2, 10) if quick else (101, 300)
    mod = luaimport.loads(SOURCE, "bench_mod")
    cpu = in_process(mod, 5 if quick else 21, 100 if quick else 20_000)
    base = cpu["raw `client.evalsha`"]
    own = cpu["`mod.leaf(client, [k], [v])`"] - base
    rows, judged_rows = [], []
    for label, server in _common.servers():
        with server as url:
            name, samples = measure(url, mod, rounds, calls)
        raw = samples["raw `client.evalsha(sha, 1, k, v)`"]
        leaf = _common.ratios(samples["`mod.leaf(client, [k], [v])`"], raw)
        holds = _common.judged(leaf, TARGET)
        trip = statistics.median(raw)
        _common.figure(
            f"(a) call / raw EVALSHA, {name}",
            _common.spread(leaf),
            f"<= {TARGET}x",
            holds,
            ""
            if holds
            else f"luaimport's own Python is {own:.2f} µs a call, {own / trip:.1%} of this "
            f"{trip:.0f} µs round trip: the spread is the round trip's (see (a))",
        )
        judged_rows.append(f"| {name} ({label}) | {_common.spread(leaf)} |")
        for form, times in samples.items():
            ratio = _common.spread(_common.ratios(times, raw)) if times is not raw else "1"
            rows.append(f"| {name} | {form} | {statistics.median(times):.1f} | {ratio} |")
    return [
        "## (a) One call at a time",
        "",
        f"The same script by SHA on the same connection, one call at a time; {rounds} rounds of {calls} "
        "calls, the forms taking turns in every round; the ratio to raw EVALSHA is per round, its median "
        "and interquartile range.",
        "",
        "| server | call | µs per call (median) | / raw EVALSHA |",
        "|---|---|---|---|",
        *rows,
        "",
        f"luaimport `fn(client, keys, args)` / raw EVALSHA [target: at most {TARGET}x]:",
        "",
        "| server | ratio |",
        "|---|---|",
        *judged_rows,
        "",
        "In process, on a client whose `execute_command` does nothing (CPU µs per call, fastest of "
        "the rounds): what luaimport's Python costs without the round trip.",
        "",
        "| call | CPU µs | luaimport's own µs |",
        "|---|---|---|",
        *(f"| {form} | {us:.2f} | {us - base:+.2f} |" for form, us in cpu.items()),
        "",
    ]


if __name__ == "__main__":
    print("\n".join(section("--quick" in sys.argv)))
