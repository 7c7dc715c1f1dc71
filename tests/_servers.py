"""What the server under test can do, asked of the server itself."""

from __future__ import annotations

from typing import Any

from luaimport import _protocol


def flags_supported(client: Any) -> bool:
    """Whether the server reads script flags and knows EVALSHA_RO: Valkey, and Redis 7+; not Redis 6.2."""
    info = client.info("server")
    return "valkey_version" in info or int(str(info["redis_version"]).split(".")[0]) >= 7


def has_functions(client: Any) -> bool:
    """Whether the server has Redis Functions: the same servers, as Functions came with script flags."""
    return flags_supported(client)


def library_names(client: Any) -> list[str]:
    """The names of the Functions libraries on the server, sorted."""
    return sorted(
        name for name, _ in _protocol._libraries(client.execute_command("FUNCTION", "LIST", "WITHCODE"))
    )
