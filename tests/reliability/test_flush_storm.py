"""Flush storm: another client sends SCRIPT FLUSH every few milliseconds while threads and
asyncio tasks make counting calls.  Every call succeeds, and each ran exactly once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import redis
import redis.asyncio

import luaimport

from ._support import Ledger, command_calls, counting, join_all, record, server_name, size

CALLS = size(ci=4_000, full=20_000)
THREADS = 8
TASKS = 100
FLUSH_EVERY = 0.003  # seconds between two flushes
TIME_LIMIT = size(ci=60, full=600)  # seconds: a bound, never an expectation


class Flusher(threading.Thread):
    """Sends SCRIPT FLUSH every ``every`` seconds until stopped (bounded in count and time)."""

    def __init__(self, server_kwargs: dict[str, Any], every: float, deadline: float) -> None:
        super().__init__(name="flusher")
        self.client = redis.Redis(**server_kwargs)
        self.every = every
        self.deadline = deadline
        self.stopped = threading.Event()
        self.flushes = 0

    def run(self) -> None:
        try:
            while not self.stopped.is_set() and self.flushes < 1_000_000 and time.monotonic() < self.deadline:
                self.client.script_flush()
                self.flushes += 1
                self.stopped.wait(self.every)
        finally:
            self.client.close()


def test_flush_storm(server_kwargs: dict[str, Any]) -> None:
    count = counting().count
    keys = ["storm:n", "storm:runs"]
    ledger = Ledger()
    admin = redis.Redis(**server_kwargs)
    admin.delete(*keys)
    admin.config_resetstat()
    deadline = time.monotonic() + TIME_LIMIT
    per_thread = CALLS // 2 // THREADS
    per_task = (CALLS - per_thread * THREADS) // TASKS
    client = redis.Redis(**server_kwargs)  # shared by the threads, as an application shares one

    def thread_calls(t: int) -> None:
        for i in range(per_thread):
            if time.monotonic() > deadline:
                return
            call_id = f"t{t}.{i}"
            try:
                reply = count(client, keys, [call_id])
            except Exception as exc:
                ledger.fail(call_id, exc)
            else:
                ledger.ok(call_id, reply)

    async def task_calls(aclient: redis.asyncio.Redis, k: int) -> None:
        for i in range(per_task):
            if time.monotonic() > deadline:
                return
            call_id = f"a{k}.{i}"
            try:
                reply = await count(aclient, keys, [call_id])
            except Exception as exc:
                ledger.fail(call_id, exc)
            else:
                ledger.ok(call_id, reply)

    async def all_tasks() -> None:
        aclient = redis.asyncio.Redis(**server_kwargs)
        try:
            await asyncio.gather(*(task_calls(aclient, k) for k in range(TASKS)))
        finally:
            await aclient.aclose()

    flusher = Flusher(server_kwargs, FLUSH_EVERY, deadline)
    workers = [threading.Thread(target=thread_calls, args=(t,), name=f"caller-{t}") for t in range(THREADS)]
    workers.append(threading.Thread(target=asyncio.run, args=(all_tasks(),), name="asyncio"))
    started = time.monotonic()
    flusher.start()
    try:
        for worker in workers:
            worker.start()
        join_all(workers, TIME_LIMIT + 30)
    finally:
        flusher.stopped.set()
        flusher.join(30)
    seconds = time.monotonic() - started
    client.close()

    heals = command_calls(admin, "eval")
    runs, counter = admin.hgetall("storm:runs"), int(admin.get("storm:n") or 0)
    figures = ledger.settle(runs, counter, unknown=lambda e: False)
    record(
        "flush storm",
        server_name(admin),
        calls=per_thread * THREADS + per_task * TASKS,
        threads=THREADS,
        tasks=TASKS,
        flushes=flusher.flushes,
        heals=heals,
        seconds=round(seconds, 1),
        errors=dict(ledger.errors()),
        **figures,
    )
    admin.close()
    assert ledger.failed == {}, f"failed calls: {ledger.errors().most_common(5)}"
    assert figures["acknowledged"] == per_thread * THREADS + per_task * TASKS
    assert flusher.flushes > 0 and heals > 0  # the storm really emptied the cache under the calls


PIPELINES = size(ci=60, full=1_000)
PIPELINE_CALLS = 10  # luaimport calls per pipeline


def test_flush_storm_pipelines(server_kwargs: dict[str, Any]) -> None:
    """Pipelines are never replayed: a call whose script a flush removed between its load in the
    pipeline and its run is reported as ``LuaNotLoadedError`` and did not run; every other call ran once."""
    count = counting().count
    keys = ["storm:pn", "storm:pruns"]
    ledger = Ledger()
    admin = redis.Redis(**server_kwargs)
    admin.delete(*keys)
    deadline = time.monotonic() + TIME_LIMIT
    client = redis.Redis(**server_kwargs)
    threads = 4

    def pipelines(t: int) -> None:
        for p in range(PIPELINES // threads):
            if time.monotonic() > deadline:
                return
            ids = [f"p{t}.{p}.{i}" for i in range(PIPELINE_CALLS)]
            with client.pipeline(transaction=p % 2 == 0) as pipe:
                for call_id in ids:
                    count(pipe, keys, [call_id])
                try:
                    results = pipe.execute(raise_on_error=False)
                except Exception as exc:  # the pipeline could not run: nothing of it ran
                    for call_id in ids:
                        ledger.fail(call_id, exc)
                    continue
            for call_id, result in zip(ids, results, strict=True):
                if isinstance(result, Exception):
                    ledger.fail(call_id, result)
                else:
                    ledger.ok(call_id, result)

    flusher = Flusher(server_kwargs, FLUSH_EVERY, deadline)
    workers = [threading.Thread(target=pipelines, args=(t,), name=f"pipelines-{t}") for t in range(threads)]
    flusher.start()
    try:
        for worker in workers:
            worker.start()
        join_all(workers, TIME_LIMIT + 30)
    finally:
        flusher.stopped.set()
        flusher.join(30)
    client.close()

    runs, counter = admin.hgetall("storm:pruns"), int(admin.get("storm:pn") or 0)
    figures = ledger.settle(runs, counter, unknown=lambda e: False)
    not_loaded = sum(isinstance(e, luaimport.LuaNotLoadedError) for e in ledger.failed.values())
    record(
        "flush storm, pipelines",
        server_name(admin),
        pipelines=PIPELINES // threads * threads,
        calls=PIPELINES // threads * threads * PIPELINE_CALLS,
        flushes=flusher.flushes,
        not_loaded=not_loaded,
        errors=dict(ledger.errors()),
        **figures,
    )
    admin.close()
    assert not_loaded == len(ledger.failed), f"other failures: {ledger.errors().most_common(5)}"
