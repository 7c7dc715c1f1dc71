"""Restart: the server process is killed (SIGKILL) and started again while calls run.

The server is the test's own, on a loopback port, with an append-only file synced before every
reply (``appendfsync always``), so what it acknowledged survives the kill.  The clients never
resend a command themselves (``Retry(NoBackoff(), 0)``): a call that ran twice could only be
luaimport's doing.  A second run uses redis-py's default ``Retry`` instead (since redis-py 6,
retries with backoff after a connection error or a timeout: 3 in 6.x, 10 in 8.1), to measure
what it does: it resends a command whose reply the kill lost, so such a call can run twice;
that run counts them instead of failing on them, and does not bound a failing call's time.

Asserted: every failing call fails with a ``ConnectionError``, within the socket timeout plus a
margin (no hang); calls succeed again once the server is back, with no user action; every reply
is its own call's; no call ran twice; every acknowledged call ran; a call that ran was either
acknowledged or failed with a connection error (its outcome unknown to the client: the server
may have run it and lost the connection before replying); the counter is the number of runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from ._support import (
    Ledger,
    ServerProcess,
    command_calls,
    counting,
    join_all,
    no_retry,
    record,
    server_name,
    size,
)

RESTARTS = size(ci=1, full=3)
THREADS = 4
TASKS = 16
SOCKET_TIMEOUT = 1.0  # seconds, for connecting and for each reply
MARGIN = 1.0  # seconds a failing call may take beyond the socket timeout
DOWN = 0.5  # seconds the server stays dead
CALLS_BETWEEN = size(ci=300, full=2_000)  # successful calls before each kill, and after the last restart
TIME_LIMIT = size(ci=60, full=300)


@pytest.mark.parametrize("resend", [False, True], ids=["no-resend", "redis-py-default-retry"])
def test_restart(server_binary: str, tmp_path: Path, resend: bool) -> None:
    server = ServerProcess(
        server_binary, tmp_path / "server", "--appendonly", "yes", "--appendfsync", "always", "--save", ""
    )
    server.start()
    count = counting().count
    keys = ["restart:n", "restart:runs"]
    options: dict[str, Any] = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}
    if not resend:
        options["retry"] = no_retry()
    client = redis.Redis(**options, **server.kwargs)
    ledger = Ledger()
    stop = threading.Event()
    deadline = time.monotonic() + TIME_LIMIT
    restarts = 0
    ok_since_restart = [0] * (RESTARTS + 1)  # successful calls after each restart (0: before any)

    def call_made(call_id: str, began: float, reply: Any = None, exc: Exception | None = None) -> None:
        if exc is None:
            ledger.ok(call_id, reply)
            ok_since_restart[restarts] += 1
        else:
            ledger.fail(call_id, exc, time.monotonic() - began)

    def thread_calls(t: int) -> None:
        for i in range(1_000_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            call_id, began = f"t{t}.{i}", time.monotonic()
            try:
                reply = count(client, keys, [call_id])
            except Exception as exc:
                call_made(call_id, began, exc=exc)
                stop.wait(0.01)  # the server is down: do not spin
            else:
                call_made(call_id, began, reply)

    async def task_calls(aclient: redis.asyncio.Redis, k: int) -> None:
        for i in range(1_000_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            call_id, began = f"a{k}.{i}", time.monotonic()
            try:
                reply = await count(aclient, keys, [call_id])
            except Exception as exc:
                call_made(call_id, began, exc=exc)
                await asyncio.sleep(0.01)
            else:
                call_made(call_id, began, reply)

    async def all_tasks() -> None:
        aclient = redis.asyncio.Redis(**options, **server.kwargs)
        try:
            await asyncio.gather(*(task_calls(aclient, k) for k in range(TASKS)))
        finally:
            await aclient.aclose()

    def wait_for_calls(phase: int) -> None:
        while ok_since_restart[phase] < CALLS_BETWEEN:
            assert time.monotonic() < deadline, f"only {ok_since_restart} calls succeeded in {TIME_LIMIT} s"
            time.sleep(0.01)

    workers = [threading.Thread(target=thread_calls, args=(t,), name=f"caller-{t}") for t in range(THREADS)]
    workers.append(threading.Thread(target=asyncio.run, args=(all_tasks(),), name="asyncio"))
    try:
        for worker in workers:
            worker.start()
        for restart in range(RESTARTS):
            wait_for_calls(restart)
            server.kill()
            time.sleep(DOWN)
            server.start()
            restarts += 1
        wait_for_calls(restarts)
        stop.set()
        join_all(workers, 30)
        after = count(client, keys, ["after"])  # a call after everything: it simply works
        ledger.ok("after", after)
        admin = redis.Redis(**server.kwargs)
        heals = command_calls(admin, "eval")  # since the last restart, which reset the statistics
        figures = ledger.settle(
            admin.hgetall("restart:runs"),
            int(admin.get("restart:n") or 0),
            unknown=lambda exc: isinstance(exc, redis.ConnectionError),
            allow_twice=resend,
        )
        name = server_name(admin)
        admin.close()
    finally:
        stop.set()
        client.close()
        server.stop()
    record(
        "restart, redis-py default retry" if resend else "restart",
        name,
        redis_py=redis.__version__,
        restarts=RESTARTS,
        down_seconds=DOWN,
        socket_timeout=SOCKET_TIMEOUT,
        slowest_failure=round(ledger.failure_seconds, 3),
        heals_after_last_restart=heals,
        errors=dict(ledger.errors().most_common(6)),
        **figures,
    )
    assert all(isinstance(exc, redis.ConnectionError) for exc in ledger.failed.values()), ledger.errors()
    if not resend:  # redis-py's retry waits between its attempts (up to seconds)
        assert ledger.failure_seconds < SOCKET_TIMEOUT + MARGIN
    assert all(ok_since_restart), ok_since_restart  # calls worked again after every restart
    if not name.startswith("Redis 6."):  # Redis 6.2 writes SCRIPT LOAD to its AOF, and so gets it back
        assert heals >= 1  # the restarted server had no scripts: the first call after it healed
