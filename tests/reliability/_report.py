"""Write the reliability suite's figures into docs/reliability.md (run by ``bash scripts/reliability``).

``python tests/reliability/_report.py FIGURES DOC --date D --machine M`` reads the JSON lines the
scenarios appended to FIGURES (and one ``_run`` line per server from the script), and replaces
the part of DOC between the two ``figures`` markers with one table per scenario, a row per
server.  Everything else in DOC is prose, kept as it is.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

BEGIN = "<!-- figures: written by bash scripts/reliability, do not edit by hand -->"
END = "<!-- end of figures -->"

Row = dict[str, Any]
Column = tuple[str, Callable[[Row], object]]


def _get(key: str) -> Callable[[Row], object]:
    return lambda row: row.get(key, "")


def _errors(row: Row) -> str:
    errors: dict[str, int] = row.get("errors") or {}
    kinds: dict[str, int] = {}
    for text, n in errors.items():
        kind = text.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + n
    return ", ".join(f"{kind} {n:,}" for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1])) or "none"


def _n(key: str) -> Callable[[Row], object]:
    def number(row: Row) -> object:
        value = row.get(key)
        return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value

    return number


SCENARIOS: dict[str, tuple[str, list[Column]]] = {
    "flush storm": (
        "SCRIPT FLUSH every 3 ms (plus the time a flush takes) while 8 threads and 100 asyncio tasks "
        "make counting calls.",
        [
            ("calls", _n("calls")),
            ("flushes", _n("flushes")),
            ("heals (EVAL)", _n("heals")),
            ("failed", _n("failed")),
            ("acknowledged = counter = runs", _n("acknowledged")),
            ("ran twice", _n("ran_twice")),
            ("seconds", _get("seconds")),
        ],
    ),
    "flush storm, pipelines": (
        "The same storm against pipelines of 10 calls (half of them transactions), 4 threads. A call "
        "whose script a flush removed between its load in the pipeline and its run is `LuaNotLoadedError`: "
        "it did not run, and the pipeline is not replayed.",
        [
            ("pipelined calls", _n("calls")),
            ("flushes", _n("flushes")),
            ("LuaNotLoadedError (did not run)", _n("not_loaded")),
            ("acknowledged = runs", _n("acknowledged")),
            ("other failures", lambda row: f"{row['failed'] - row['not_loaded']:,}"),
            ("ran twice", _n("ran_twice")),
        ],
    ),
    "eviction": (
        "Between rounds of calls another client EVALs 1,000 distinct throwaway scripts; each round "
        "also binds a new script that the other client first ran with EVAL.",
        [
            ("throwaway EVALs", _n("throwaway_evals")),
            (
                "evicted_scripts",
                lambda row: (
                    "no such field" if row["evicted_scripts"] is None else f"{row['evicted_scripts']:,}"
                ),
            ),
            ("maxmemory-scripts", lambda row: "set" if row["maxmemory_scripts"] else "no such setting"),
            ("calls", _n("calls")),
            ("heals", _n("heals")),
            ("bound-after-EVAL scripts found evicted", _n("stamp_missing")),
            ("luaimport-only scripts found evicted", _n("count_missing")),
            ("failed", _n("failed")),
        ],
    ),
    "restart": (
        "The server is killed (SIGKILL) and started again, down 0.5 s each time, while 4 threads and "
        "16 asyncio tasks call; clients without redis-py retries, socket timeout 1 s.",
        [
            ("restarts", _get("restarts")),
            ("acknowledged", _n("acknowledged")),
            ("failed (all ConnectionError)", _n("failed")),
            ("of which ran", _n("failed_but_ran")),
            ("slowest failing call (s)", _get("slowest_failure")),
            ("heals after the last restart", _n("heals_after_last_restart")),
            ("ran twice", _n("ran_twice")),
        ],
    ),
    "restart, redis-py default retry": (
        "The same restarts, with redis-py's default `Retry` (since redis-py 6: retries with backoff, "
        "10 in 8.1): redis-py resends a command whose reply the kill lost. Not a luaimport retry; "
        "shown so that its effect is known.",
        [
            ("redis-py", _get("redis_py")),
            ("acknowledged", _n("acknowledged")),
            ("failed", _n("failed")),
            ("ran twice (resent by redis-py)", _n("ran_twice")),
        ],
    ),
    "cluster faults": (
        "A 3-primary cluster (one replica each, append-only files): SCRIPT FLUSH on one primary, then "
        "a SIGKILL and restart of another (down 0.5 s), during calls over every slot; 4 threads "
        "sharing one cluster client without retries (one client each before redis-py 8).",
        [
            ("calls", _n("calls")),
            ("slots", _n("slots")),
            ("acknowledged", _n("acknowledged")),
            ("failed", _n("failed")),
            ("errors", _errors),
            ("of which ran", _n("failed_but_ran")),
            (
                "heals on the flushed / restarted primary",
                lambda r: f"{r['heals_on_flushed']} / {r['heals_on_restarted']}",
            ),
            ("ran twice", _n("ran_twice")),
        ],
    ),
    "asyncio cancellation": (
        "Tasks of four kinds (a call, a plain command, a pipeline, a transaction) cancelled at random "
        "points while another client flushes every millisecond, then single healing calls cancelled "
        "somewhere in their duration; one client, a blocking pool of 8 connections.",
        [
            ("tasks", _n("calls")),
            ("cancelled", _n("cancelled")),
            ("cancelled mid-heal", _n("cancelled_in_heal")),
            ("completed, own replies", _n("completed")),
            ("connections in use after", _n("in_use_after")),
            ("connections (limit 8)", _n("connections")),
        ],
    ),
    "concurrent start-up": (
        "16 threads at once: install(), first imports of 6 Lua modules that CALL each other (two in a "
        "cycle), bind() and a call; a new package each round.",
        [
            ("rounds", _n("rounds")),
            ("threads", _n("threads")),
            ("module executions (one per module and round)", _n("executions")),
            ("errors", _n("errors")),
        ],
    ),
    "ACL": (
        "Calls, heals after a flush by the default user, bind, pipelines and asyncio under a user "
        "with only the permissions listed above; users without SCRIPT and without EVAL.",
        [("the user", lambda row: f"`{row['user']}`")],
    ),
}


def render(rows: list[Row], date: str, machine: str) -> str:
    runs = [row for row in rows if row["scenario"] == "_run"]
    lines = [
        f"Run on {date} with `bash scripts/reliability` (full size), on {machine}.",
        "",
        "| server | binary | result |",
        "|---|---|---|",
    ]
    lines += [f"| {run['server']} | {run['binary']} | {run['summary']} |" for run in runs]
    for scenario, (what, columns) in SCENARIOS.items():
        found = [row for row in rows if row["scenario"] == scenario]
        if not found:
            continue
        title = scenario if scenario.startswith("asyncio") else scenario[0].upper() + scenario[1:]
        lines += ["", f"### {title}", "", what, ""]
        lines.append("| server | " + " | ".join(header for header, _ in columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        for row in found:
            cells = [str(cell(row)).replace("|", "\\|") for _, cell in columns]
            lines.append(f"| {row['server']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures", type=Path)
    parser.add_argument("doc", type=Path)
    parser.add_argument("--date", required=True)
    parser.add_argument("--machine", required=True)
    options = parser.parse_args()
    rows = [json.loads(line) for line in options.figures.read_text().splitlines() if line.strip()]
    doc = options.doc.read_text()
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    options.doc.write_text(f"{head}{BEGIN}\n{render(rows, options.date, options.machine)}\n\n{END}{tail}")


if __name__ == "__main__":
    main()
