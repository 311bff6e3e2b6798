"""File helpers shared by checkpoints (`training`) and presets (`zoo`): checksums and atomic
writes."""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile

TEMPORARY_PREFIX = ".tmp-"


def sha256(path: pathlib.Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: pathlib.Path, write, same=None) -> None:
    """Writes `path` through `write(temporary_path)`, then moves the file into place.

    The temporary file (`.tmp-<stem>-*<suffixes>`, in the same folder so that `os.replace` is
    atomic) is removed whatever happens, so a failed or killed write leaves the old file, if
    any, untouched. Where `same(old_path, new_path)` says the file already there holds the
    same content, that file is kept byte for byte.

    Args:
        path: pathlib.Path, the file to write; its folder must exist.
        write: callable taking the temporary path, which it must fill.
        same: callable `(old, new) -> bool` or None. Defaults to `None`.
    """
    path = pathlib.Path(path)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent,
        prefix=f"{TEMPORARY_PREFIX}{path.name.split('.')[0]}-",
        suffix="".join(path.suffixes),
    )
    os.close(handle)
    temporary = pathlib.Path(temporary)
    try:
        write(temporary)
        if same is not None and path.is_file() and same(path, temporary):
            return
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
