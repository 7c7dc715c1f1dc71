"""The sdist and the wheel: what they hold, and the wheel at work outside the source tree.

Both are built once per run with ``python -m build --no-isolation`` (the
wheel from the sdist, so a file missing from the sdist breaks the wheel too)
from a copy of the source tree, so nothing is written into the checkout and
nothing is downloaded.  The installed wheel lives in a fresh virtual
environment where luaimport and demo_pkg come from the wheel alone; only
redis-py comes from this environment (a ``.pth`` line naming a directory that
holds nothing else), which keeps the test offline and fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).parent.parent
PACKAGES = ("luaimport", "demo_pkg")
DEMO_DATA = sorted(
    p.relative_to(ROOT).as_posix()
    for pattern in ("*.lua", "*.pyi", "py.typed")
    for p in (ROOT / "demo_pkg").glob(pattern)
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("dists")
    source = work / "source"
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.rdb"
    )
    shutil.copytree(ROOT, source, ignore=ignore)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [sdist] = (work / "dist").glob("luaimport-*.tar.gz")
    [wheel] = (work / "dist").glob("luaimport-*-py3-none-any.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_the_wheel_holds_both_packages_with_their_data(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in ROOT.glob("*/*.py") if p.parent.name in PACKAGES}
    assert "luaimport/__init__.py" in modules and "demo_pkg/__main__.py" in modules
    assert modules | {"luaimport/py.typed"} <= names
    assert {"demo_pkg/counters.lua", "demo_pkg/counters.pyi", "demo_pkg/py.typed"} <= set(DEMO_DATA)
    assert set(DEMO_DATA) <= names
    assert "luaimport/pytest_plugin.py" in names
    outside = ("tests/", "docs/", "scripts/", "demo_pkg/tests/")
    assert not [n for n in names if n.startswith(outside) or "__pycache__" in n]


def test_the_sdist_holds_the_source_tests_and_docs(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        names = {n.removeprefix(top + "/") for n in sdist.getnames()}
    expected = {
        "pyproject.toml",
        "README.md",
        "MANIFEST.in",
        "luaimport/py.typed",
        "tests/conftest.py",
        "tests/test_packaging.py",
        "tests/fixtures/lipkg/basic.lua",
        "tests/fixtures/corpus/bytes_non_utf8_crlf_line4.lua",
        "docs/migrating-from-lua_call.md",
        "docs/migrating-from-register-script.md",
        "scripts/test",
        "demo_pkg/tests/conftest.py",
        "demo_pkg/tests/pytest.ini",
        "demo_pkg/tests/test_scripts.py",
        *DEMO_DATA,
        *(p.relative_to(ROOT).as_posix() for p in (ROOT / "luaimport").glob("*.py")),
    }
    assert expected <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def _fresh_venv(path: Path) -> tuple[Path, Path]:
    """A new virtual environment without pip, where redis-py is importable from this one and
    nothing else is: its interpreter and its site-packages."""
    venv.create(path, with_pip=False, symlinks=True)
    python = path / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    purelib = Path(where.stdout.strip())
    deps = path / "outside-deps"
    deps.mkdir()
    (deps / "redis").symlink_to(Path(redis.__file__).parent, target_is_directory=True)
    (purelib / "outside-deps.pth").write_text(f"{deps}\n")
    return python, purelib


#: run inside the other environment: where everything came from, then the Lua modules at work
PROBE = """
import importlib.resources, json, sys
import redis, luaimport
luaimport.install()
import demo_pkg
from demo_pkg import counters, queue

client = redis.Redis(**json.loads(sys.argv[1]))
print(json.dumps({
    "luaimport": luaimport.__file__,
    "counters": counters.__file__,
    "modules": list(luaimport.iter_modules(demo_pkg)),
    "bound": sorted(luaimport.bind(client, counters, queue)),
    "incr": counters.incr(client, counter="pkg:hits", by=41),
    "incr_many": counters.incr_many(client, ["pkg:a", "pkg:hits"], [1]),
    "resource": (importlib.resources.files(demo_pkg) / "counters.lua").read_text(encoding="utf-8")
    == counters.__loader__.get_source("demo_pkg.counters"),
}))
"""


def _probe(python: Path | str, server_kwargs: dict[str, object], cwd: Path, env: dict[str, str]) -> Any:
    done = subprocess.run(
        [str(python), "-c", PROBE, json.dumps(server_kwargs)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "REDIS_URL"))}


def test_the_installed_wheel_imports_and_runs_its_lua_modules(
    dists: dict[str, Path],
    tmp_path: Path,
    client: redis.Redis,
    server_kwargs: dict[str, object],
    server_url: str,
) -> None:
    python, purelib = _fresh_venv(tmp_path / "venv")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps"]
    subprocess.run([*pip, "--no-index", str(dists["wheel"])], capture_output=True, check=True, timeout=120)
    found = _probe(python, server_kwargs, tmp_path, _clean_env())
    assert found["luaimport"] == str(purelib / "luaimport" / "__init__.py")
    assert found["counters"] == str(purelib / "demo_pkg" / "counters.lua")
    names = ["counters", "queue", "ratelimit", "slide"]
    assert found["modules"] == [[f"demo_pkg.{n}", str(purelib / "demo_pkg" / f"{n}.lua")] for n in names]
    assert "demo_pkg.queue.push" in found["bound"] and "demo_pkg.counters.incr" in found["bound"]
    assert (found["incr"], found["incr_many"]) == (41, [1, 42])
    assert found["resource"] is True
    assert client.get("pkg:hits") == b"42"

    # the demo runs from the installed copy, against the test server
    done = subprocess.run(
        [str(python), "-m", "demo_pkg"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**_clean_env(), "REDIS_URL": server_url},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "queue.push(3 payloads)                       -> ids [1, 2, 3]" in done.stdout
    assert "LuaError: demo_pkg/counters.lua:13 in demo_pkg.counters.<prelude>" in done.stdout


def test_the_wheel_itself_on_sys_path_is_a_zip_archive_to_import_from(
    dists: dict[str, Path], tmp_path: Path, client: redis.Redis, server_kwargs: dict[str, object]
) -> None:
    """A wheel is a zip: zipimport loads luaimport from it, and luaimport the .lua files beside."""
    wheel = dists["wheel"]
    found = _probe(sys.executable, server_kwargs, tmp_path, {**_clean_env(), "PYTHONPATH": str(wheel)})
    assert found["luaimport"] == str(wheel / "luaimport" / "__init__.py")
    assert found["counters"] == str(wheel / "demo_pkg" / "counters.lua")
    names = ["counters", "queue", "ratelimit", "slide"]
    assert found["modules"] == [[f"demo_pkg.{n}", str(wheel / "demo_pkg" / f"{n}.lua")] for n in names]
    assert (found["incr"], found["incr_many"], found["resource"]) == (41, [1, 42], True)
