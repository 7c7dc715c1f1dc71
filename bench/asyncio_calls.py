"""(c) 1,000 concurrent luaimport calls on an asyncio client against 1,000 raw async EVALSHAs.

Both sides ``asyncio.gather`` their calls on the same ``redis.asyncio`` client, so they share its
connection pool (warmed up before timing): the difference is what luaimport's asyncio shell adds.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

import _common
import redis.asyncio

import luaimport

SOURCE = "--@function leaf\nreturn ARGV[1]\n"
TARGET = 1.05
#: the pool's size: a gather waits for a free connection, as a service's would
CONNECTIONS = 64


async def measure(url: str, calls: int, rounds: int) -> list[list[float]]:
    leaf = luaimport.loads(SOURCE, "bench_async").leaf
    pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=CONNECTIONS)
    client = redis.asyncio.Redis(connection_pool=pool)
    try:
        await luaimport.bind(client, leaf)
        sha = leaf.sha

        async def raw() -> list[object]:
            return await asyncio.gather(*(client.evalsha(sha, 1, f"k{i}", "v") for i in range(calls)))

        async def ours() -> list[object]:
            return await asyncio.gather(*(leaf(client, [f"k{i}"], ["v"]) for i in range(calls)))

        assert await raw() == await ours()  # also opens the pool's connections
        return _common.in_ms(await _common.interleaved_async([raw, ours], rounds))
    finally:
        await client.aclose()
        await pool.disconnect()


class _NoIO(redis.asyncio.Redis):
    """An asyncio client that sends nothing: what is left of a call is the Python around it."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return None


def in_process(calls: int, rounds: int) -> tuple[float, float]:
    """CPU µs per call of a gather on a client that does no I/O, raw and luaimport: the fastest round."""
    leaf = luaimport.loads(SOURCE, "bench_async").leaf
    client = _NoIO()
    sha = leaf.sha

    sides = [
        lambda: asyncio.gather(*(client.evalsha(sha, 1, f"k{i}", "v") for i in range(calls))),
        lambda: asyncio.gather(*(leaf(client, [f"k{i}"], ["v"]) for i in range(calls))),
    ]
    times = asyncio.run(_common.interleaved_async(sides, rounds, time.process_time))
    raw_us, ours_us = _common.fastest(times, calls)
    return raw_us, ours_us


def section(quick: bool = False) -> list[str]:
    calls, rounds = (10, 2) if quick else (1000, 61)
    raw_us, ours_us = in_process(calls, rounds)
    rows = []
    for _, server in _common.servers():
        with server as url:
            sync = redis.Redis.from_url(url)
            name = _common.server_name(sync)
            sync.close()
            raw, ours = asyncio.run(measure(url, calls, rounds))
        ratio = _common.ratios(ours, raw)
        medians = f"{statistics.median(raw):.1f} | {statistics.median(ours):.1f}"
        rows.append(f"| {name} | {medians} | {_common.spread(ratio)} |")
        holds = _common.judged(ratio, TARGET)
        trip = statistics.median(raw) * 1e3 / calls
        _common.figure(
            f"(c) asyncio gather / raw, {name}",
            _common.spread(ratio),
            f"<= {TARGET}x",
            holds,
            ""
            if holds
            else f"luaimport's own Python is {ours_us - raw_us:.2f} µs a call in process, against "
            f"{trip:.0f} µs per raw call in the gather: see (c)",
        )
    return [
        "## (c) asyncio: concurrent calls",
        "",
        f"`asyncio.gather` of {calls:,} calls on one `redis.asyncio` client (a blocking pool of "
        f"{CONNECTIONS} connections), against {calls:,} raw "
        f"`await client.evalsha(...)`; {rounds} rounds, the sides taking turns; ms per gather, median, "
        f"and the per-round ratio [target: at most {TARGET}x].",
        "",
        "| server | raw ms | luaimport ms | ratio |",
        "|---|---|---|---|",
        *rows,
        "",
        f"In process, on an asyncio client whose `execute_command` does nothing (CPU µs per call of a "
        f"gather of {calls:,}, fastest of {rounds} rounds): raw `client.evalsha` {raw_us:.2f}, luaimport "
        f"{ours_us:.2f}, so luaimport's own Python is {ours_us - raw_us:+.2f} µs a call: the argument check, "
        "the backend's choice and one coroutine that heals a cache miss.",
        "",
    ]


if __name__ == "__main__":
    print("\n".join(section("--quick" in sys.argv)))
