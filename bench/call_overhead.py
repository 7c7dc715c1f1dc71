"""Cost of a luaimport call against a raw EVALSHA of the same script, and of a nested CALL.

Run: bash bench/run  (writes docs/benchmarks.md).  Not a test: it asserts nothing.
Both sides send the same script by SHA over the same unix-socket connection to an
embedded Valkey; the ratio is what luaimport adds (argument checks, protocol core).
"""

from __future__ import annotations

import platform
import statistics

import _common

import luaimport

ROUNDS, CALLS = 15, 5000
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


def main() -> int:
    mod = luaimport.loads(SOURCE, "bench_mod")
    with _common.valkey() as (client, _):
        luaimport.bind(client, mod)
        sha, declared_sha = mod.leaf.sha, mod.declared.sha
        raws, ourses, nesteds, raws_declared, plains, keywords = _common.interleaved(
            [
                lambda: client.evalsha(sha, 1, "k", "v"),
                lambda: mod.leaf(client, ["k"], ["v"]),
                lambda: mod.nested(client, ["k"], ["v"]),
                lambda: client.evalsha(declared_sha, 1, "k", "v"),
                lambda: mod.declared(client, ["k"], ["v"]),
                lambda: mod.declared(client, key="k", value="v"),
            ],
            ROUNDS,
            CALLS,
        )
    # a ratio per round, between runs made seconds apart, is steadier than a ratio of medians
    ratios = sorted(o / r for o, r in zip(ourses, raws, strict=True))
    declared_ratios = {
        form: sorted(o / r for o, r in zip(times, raws_declared, strict=True))
        for form, times in (("plain", plains), ("keyword", keywords))
    }
    raw, ours, nested, plain, keyword = (
        statistics.median(times) for times in (raws, ourses, nesteds, plains, keywords)
    )
    rows = [
        ("raw `client.evalsha(sha, 1, k, v)`", raw),
        ("`mod.leaf(client, [k], [v])`", ours),
        ("`mod.nested(client, [k], [v])` (one CALL inside)", nested),
        ("`mod.declared(client, [k], [v])` (`--@keys key`, `--@args value`)", plain),
        ("`mod.declared(client, key=k, value=v)`", keyword),
    ]
    lines = [
        "# Benchmarks",
        "",
        f"Command: `bash bench/run` (Python {platform.python_version()}, {platform.machine()}, "
        f"embedded Valkey on a unix socket, median of {ROUNDS} interleaved rounds of {CALLS} calls).",
        "",
        "| call | µs per call |",
        "|---|---|",
        *(f"| {name} | {us:.1f} |" for name, us in rows),
        "",
        f"luaimport call / raw EVALSHA, median of the per-round ratios: **{statistics.median(ratios):.3f}x** "
        f"(rounds ranged {ratios[0]:.3f}x to {ratios[-1]:.3f}x; target: at most 1.03x).",
        "",
        *(
            f"A declared function, {form} form / raw EVALSHA: **{statistics.median(r):.3f}x** "
            f"({r[0]:.3f}x to {r[-1]:.3f}x)."
            for form, r in declared_ratios.items()
        ),
        "",
    ]
    _common.write("benchmarks.md", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
