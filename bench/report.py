"""Run every benchmark and write docs/benchmarks.md: the summary of targets, then each section.

Usage (through ``bash bench/run``, which sets up the virtual environment)::

    bench/report.py                 every section; writes docs/benchmarks.md and prints it
    bench/report.py pipelines ...   only these sections, printed, nothing written
    bench/report.py --quick         every section once at tiny size (a smoke run), nothing written

Benchmarks are not tests: nothing here asserts a target; the page says whether each holds.
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import _common
import redis

SECTIONS = [
    "call_overhead",
    "pipelines",
    "asyncio_calls",
    "nested_calls",
    "imports",
    "bind",
    "cluster_calls",
    "memory",
    "functions",
]


def machine() -> list[str]:
    """What the numbers were measured on: hardware, software, and the servers."""
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown",
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=_common.ROOT
    ).stdout.strip()
    servers = ", ".join(
        f"{'.'.join(map(str, _common.version(path)))} ({origin})" for origin, path in _common.binaries()
    )
    return [
        f"- Machine: {cpu}, {os.cpu_count()} CPUs, {platform.platform()}; load average "
        f"{os.getloadavg()[0]:.2f} when the run started.",
        f"- Python {platform.python_version()}, redis-py {redis.__version__}, luaimport at `{commit}`.",
        f"- Servers (unix sockets; clusters on loopback TCP): {servers}"
        + (
            f"; `REDIS_URL` {os.environ['REDIS_URL']} for the round-trip figures"
            if "REDIS_URL" in os.environ
            else ""
        )
        + ".",
    ]


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    chosen = [name for name in argv if not name.startswith("--")] or SECTIONS
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    head = machine()
    began = time.monotonic()
    body: list[str] = []
    for name in chosen:
        print(f"== {name}", file=sys.stderr, flush=True)
        body += importlib.import_module(name).section(quick)
    minutes = (time.monotonic() - began) / 60
    verdict = {True: "yes", False: "**no**", None: "n/a"}
    page = [
        "# Benchmarks",
        "",
        f"Command: `bash bench/run` ({minutes:.0f} minutes, "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC).  Benchmarks are not tests: "
        "CI does not run them.  Every ratio compares two things timed alternately in the same run.",
        "",
        *head,
        "",
        "## Targets",
        "",
        "| figure | measured | target | holds |",
        "|---|---|---|---|",
        *(
            f"| {f.name} | {f.measured} | {f.target} | {verdict[f.holds]}{' ' + f.note if f.note else ''} |"
            for f in _common.FIGURES
        ),
        "",
        *body,
    ]
    text = "\n".join(page)
    if not quick and chosen == SECTIONS:
        (_common.DOCS / "benchmarks.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
