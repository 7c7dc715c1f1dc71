"""The migration guides' code runs as shown, against the test server.

A guide is read top to bottom like a tutorial.  A code block whose first line
is ``# file: PATH`` (``-- file: PATH`` in Lua) is written to PATH, that line
included (so line numbers are the ones shown), in a fresh directory, replacing
what an earlier block wrote there.  A
``console`` block runs each ``$ python FILE`` in that directory, with
``REDIS_URL`` naming the test server (emptied first: keys and scripts), and
its output must be the lines shown below the command.  A console block right
after ``<!-- runs on: redis_version < 7 -->`` (or ``>= 7``) runs only on such
servers; the matrix in ``scripts/test`` has both, so every block runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

DOCS = Path(__file__).parent.parent / "docs"
GUIDES = ["migrating-from-register-script.md", "migrating-from-lua_call.md"]

FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.S | re.M)
FILE = re.compile(r"(?:#|--) file: (\S+)")
RUNS_ON = re.compile(r"<!-- runs on: redis_version (<|>=) (\d+) -->\n\n?\Z")


def steps(text: str) -> list[tuple[str, str, str]]:
    """``(kind, a, b)`` in document order: ``("file", path, content)``, ``("run", command, expected)``."""
    found: list[tuple[str, str, str]] = []
    for block in FENCE.finditer(text):
        body = block["body"]
        written = FILE.fullmatch(body.partition("\n")[0])
        if written:
            found.append(("file", written[1], body))
        elif block["lang"] == "console":
            condition = RUNS_ON.search(text, 0, block.start())
            when = f"{condition[1]} {condition[2]}" if condition else ""
            for command in re.split(r"^(?=\$ )", body, flags=re.M):
                if command.strip():
                    line, _, expected = command.partition("\n")
                    found.append(("run", f"{line.removeprefix('$ ')}|{when}", expected))
    return found


def _version(client: redis.Redis) -> int:
    return int(str(client.info("server")["redis_version"]).split(".")[0])


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_code_runs_as_shown(guide: str, tmp_path: Path, client: redis.Redis, server_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"REDIS_URL": server_url}
    version = _version(client)
    ran = 0
    for kind, first, second in steps((DOCS / guide).read_text(encoding="utf-8")):
        if kind == "file":
            target = tmp_path / first
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(second, encoding="utf-8")
            continue
        command, _, when = first.partition("|")
        if when:
            op, bound = when.split()
            if (version < int(bound)) != (op == "<"):
                continue
        program = command.split()
        assert program[0] == "python" and len(program) == 2, f"{guide}: only `$ python FILE` runs: {command}"
        client.flushall()
        client.script_flush()
        done = subprocess.run(
            [sys.executable, program[1]],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{guide}: $ {command}\n{done.stderr}"
        shown = [line.rstrip() for line in second.rstrip("\n").splitlines()]
        assert done.stdout.rstrip("\n").splitlines() == shown, f"{guide}: $ {command}"
        ran += 1
    assert ran >= 2, f"{guide}: only {ran} console commands ran on this server"


def test_the_readme_links_both_guides() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for guide in GUIDES:
        assert f"(docs/{guide})" in readme
