"""Type stubs: demo_pkg's are current, and mypy checks calls of Lua functions through them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import luaimport
from luaimport._stubs import stub

ROOT = Path(__file__).parent.parent
USER = Path(__file__).parent / "fixtures" / "typing_user"


@pytest.mark.usefixtures("import_state")
def test_demo_pkg_stubs_are_current() -> None:
    """To regenerate them:
    python -c 'import luaimport; luaimport.install(); import demo_pkg; luaimport.write_stubs(demo_pkg)'
    """
    from demo_pkg import counters, queue, ratelimit, slide

    modules = (counters, queue, ratelimit, slide)
    assert sorted(p.name for p in (ROOT / "demo_pkg").glob("*.pyi")) == sorted(
        Path(m.__file__).with_suffix(".pyi").name for m in modules
    )
    for module in modules:
        committed = Path(module.__file__).with_suffix(".pyi").read_text(encoding="utf-8")
        assert committed == stub(module), f"{module.__name__}: stale stub; regenerate it"


@pytest.mark.usefixtures("import_state")
def test_write_stubs_writes_beside_each_lua_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "spkg").mkdir()
    (tmp_path / "spkg" / "__init__.py").write_text("")
    (tmp_path / "spkg" / "m.lua").write_text("--@function f\n--@keys k\nreturn 1\n")
    (tmp_path / "spkg" / "single.lua").write_text("return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import spkg  # type: ignore[import-not-found]

    written = luaimport.write_stubs(spkg)
    assert sorted(Path(p).name for p in written) == ["m.pyi", "single.pyi"]
    text = (tmp_path / "spkg" / "m.pyi").read_text()
    assert (
        "def __call__(self, client: _Sync, *, args: Sequence[_Arg] | None = None, k: _Key) -> Any: ..."
        in text
    )
    single = (tmp_path / "spkg" / "single.pyi").read_text()
    assert single.endswith("script: str\nsha: str\nfunction_name: str\n")


def mypy(path: Path, tmp_path: Path) -> tuple[str, int]:
    """mypy --strict on ``path`` in its own process, finding demo_pkg (and its stubs) in the project."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path),
            "--config-file",
            "",
            str(path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MYPYPATH": str(ROOT)},
        timeout=300,
        check=False,
    )
    return done.stdout + done.stderr, done.returncode


def test_mypy_accepts_correct_calls(tmp_path: Path) -> None:
    out, status = mypy(USER / "good.py", tmp_path)
    assert status == 0, out


def test_mypy_refuses_each_wrong_call_at_its_line(tmp_path: Path) -> None:
    out, status = mypy(USER / "bad.py", tmp_path)
    assert status == 1
    lines = {int(m.group(1)) for m in re.finditer(r"bad\.py:(\d+): error", out)}
    assert lines == {10, 11, 12, 13, 14, 15, 16}, out
    assert 'No overload variant of "__call__" of "_incr_function" matches argument types' in out
    assert 'Module has no attribute "nope"' in out
