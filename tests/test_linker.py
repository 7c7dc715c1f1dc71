"""The linker's output, pinned: the same sources must give byte-identical scripts, release after release.

A script's SHA1 is its name on the server: a change of even one byte in the linked text makes
every deployed script a cache miss, and two versions of luaimport disagree about what to load.
So changes to the lexer, the sections or the linker (speed-ups above all) must leave the text
as it was.  The SHA1s below were recorded from the linker before the import speed-up of issue 11
(e) and must never change without a reason written in the commit that changes them.
"""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.usefixtures("import_state")

#: (module, function or None for a marker-less module's script, SHA1 of its linked script)
PINNED = [
    # every shape the linker copies: multi-line and bracketed CALLs, flags, varargs, long brackets
    ("linkpins.shapes", "leaf", "258ef26e648d3abfe8c5984ccb53419c3b965676"),
    ("linkpins.shapes", "multiline", "701bf6171c32e83ffede4eb18c1a64c413e4098e"),
    ("linkpins.shapes", "indexed", "f1f74414313343748083e14315542f4903080b27"),
    ("linkpins.shapes", "spread", "8cf2d67df5cdf69605db0723751a03c898035564"),
    ("linkpins.shapes", "cross", "9fbc1846b9b8b638d3ccd808a74885306496703c"),
    # line ends, BOM, and luaimport syntax inside strings and comments
    ("corpus.ok_crlf", "first", "33df0ad05a3d05e67f99f0b5160dc55220417eb8"),
    ("corpus.ok_crlf", "second", "100fcc2e308dd9e0beadc7bfe918fa100bb6a17b"),
    ("corpus.ok_lone_cr", "first", "33df0ad05a3d05e67f99f0b5160dc55220417eb8"),
    ("corpus.ok_lone_cr", "second", "100fcc2e308dd9e0beadc7bfe918fa100bb6a17b"),
    ("corpus.ok_bom", "f", "0107c4ba24b967f8ff04e66d01276df1f6f552fd"),
    ("corpus.ok_markers_in_strings", "real", "3ab14f3c3bddfe17ad83bb145130b7e15f7bc6bf"),
    ("corpus.ok_markers_in_strings", "other", "660d58a7361129ef8acac7bba564e3adb0e52939"),
    ("corpus.ok_call_text_ignored", None, "a8ec2b501428353b52a40d48d32c3888b30f90b1"),
    ("corpus.ok_comment_bracket_equals", "f", "dd29cc8c511b85c2a535aaea7292d9792de91124"),
    ("corpus.ok_emmylua", "add", "c87b22b9c6575726f02d83e9ffbed506cfdd865b"),
    # fixtures of the other tests
    ("lipkg.basic", "call_return", "435d43d3f0896dd268a8544248f9902d63ee37c0"),
    ("lipkg.basic", "factorial", "f4cf4b93ac66a9d3d547f0acdfc6966cbf792d51"),
    ("lipkg.basic", "extras", "15e61ab2c97df57d0bd263ab207feb3d537fcc35"),
    ("lipkg.strings", "texts", "dd0fc01102f905f7529684ea4a4b26a07564bb8a"),
    ("lipkg.uses_single", "incr_twice", "a70bb1333b879e6d670b5611b06d77b72957bf08"),
    ("lipkg.single", None, "bbb90eb180fc3a7c97a61185f660fc1532561889"),
    ("decl.moves", "move", "a5b648a0750a6d6ac1f0924e322104915c3a6f93"),
    ("decl.vararg", "caller", "9de433dde48c8db8657190cc41a170cfb2837909"),
    ("flagpkg.reads", "oom_entry_calls_readonly", "990f6306207cec5dd2d0e80bb262c2391358be63"),
    ("flagpkg.whole", None, "f3732f5304e0ca3493ebc9ebf72b14224aa7f9cc"),
    ("fnpkg.state", "twice", "8e90d61e699118c44530517a2f22d64587c0ff00"),
    # the demo package: a prelude, docs, declarations, and a CALL into another module
    ("demo_pkg.counters", "incr_many", "93c1802bf3b9c369085ce7c3b1b9bd63fffecb1f"),
    ("demo_pkg.queue", "push", "db73826ef5bed4c163550b75e1cc5198909ae717"),
    ("demo_pkg.queue", "requeue_expired", "9926f857421ce9b43cd6dd748fd389ac98f2d680"),
    ("demo_pkg.ratelimit", "allow", "caf5cacf6f0ece7443fd5a0cf34bf3494c43c062"),
    ("demo_pkg.slide", None, "5af8b57ceb764918a1c59ef30463c88b9d36003f"),
]


@pytest.mark.parametrize(("module", "function", "sha"), PINNED, ids=lambda v: v if isinstance(v, str) else "")
def test_linked_script_is_byte_identical_to_its_pin(module: str, function: str | None, sha: str) -> None:
    lua = importlib.import_module(module)
    script = getattr(lua, function) if function else lua
    assert script.sha == sha, f"the linked text of {module}.{function or ''} changed:\n{script.script}"
