"""Zip archives of fixture trees, to import from on ``sys.path``."""

from __future__ import annotations

import zipfile
from pathlib import Path


def make_zip(source: Path, archive: Path, *, directories: bool = False) -> Path:
    """Zip every file under ``source`` (``__pycache__`` left out), named relative to ``source``.

    With ``directories``, each directory also gets its own entry: zipimport
    sees a namespace package in an archive only through such an entry.
    """
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            name = path.relative_to(source).as_posix()
            if path.is_file():
                zf.write(path, name)
            elif directories:
                zf.writestr(name + "/", "")
    return archive
