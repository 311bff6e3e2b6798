"""File helpers shared by checkpoints (`training`) and presets (`zoo`): checksums, atomic
writes, a checkpoint's `state.json`, and one owner per folder (`hold_folder`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pathlib
import socket
import tempfile
import threading
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows: `hold_folder` locks nothing
    fcntl = None

TEMPORARY_PREFIX = ".tmp-"
LOCK_FILE = ".lock"
STATE_FILE = "state.json"


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


def write_json(path: pathlib.Path, value) -> None:
    """Writes `value` as JSON (indented, UTF-8, a final newline) with `atomic_write`."""
    text = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_state(folder: pathlib.Path, epoch: int, model_file: pathlib.Path, logs=None) -> None:
    """Writes a checkpoint's `state.json` into `folder` (atomically): `{"epoch": epochs
    completed, "model": the name of `model_file`, "bytes": its size, "sha256": its checksum,
    "logs": the epoch's logs}`. A log that is not a number is kept as its text."""

    def number_or_text(value):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return str(value)
        return value if math.isfinite(value) else str(value)  # JSON has no NaN

    model_file = pathlib.Path(model_file)
    state = {
        "epoch": int(epoch),
        "model": model_file.name,
        "bytes": model_file.stat().st_size,
        "sha256": sha256(model_file),
        "logs": {name: number_or_text(value) for name, value in (logs or {}).items()},
    }
    write_json(pathlib.Path(folder) / STATE_FILE, state)


def read_state(folder: str | os.PathLike) -> dict | None:
    """The checkpoint state `write_state` wrote into `folder`, or None without `state.json`.

    Returns:
        `{"epoch": int, "model": file name, "bytes": int, "sha256": str, "logs": dict}`.

    Raises:
        ValueError: naming the file, if `state.json` cannot be read or is not such a state.
    """
    path = pathlib.Path(folder) / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        logs = state.get("logs", {})
        state = {
            "epoch": int(state["epoch"]),
            "model": pathlib.Path(str(state["model"])).name,
            "bytes": int(state["bytes"]),
            "sha256": str(state["sha256"]),
            "logs": dict(logs),
        }
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f'{path} is not a checkpoint state (expected JSON with "epoch", "model", '
            f'"bytes" and "sha256"): {type(e).__name__}: {e}'
        ) from e
    return state


class FolderInUseError(RuntimeError):
    """Another process (or thread) holds the folder that `hold_folder` was asked for.

    Attributes:
        folder: pathlib.Path, the folder.
        holder: str, who holds it as its lock file says (`"pid 123 on host"`), or `"unknown"`.
    """

    def __init__(self, message, folder, holder):
        super().__init__(message)
        self.folder = folder
        self.holder = holder


_held = threading.local()  # the folders this thread holds: {resolved path: depth}


@contextlib.contextmanager
def hold_folder(folder: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Makes this thread the one owner of `folder` (created if needed) while the block runs.

    The lock is an exclusive `fcntl.flock` on `folder/.lock` (`LOCK_FILE`), which then holds
    the owner's pid and host name for the message another process gets. The kernel releases
    a flock when its process ends, killed or not, so a lock left by a dead process never
    blocks the next owner: the file stays, its stale content is overwritten. A thread that
    holds `folder` may hold it again (the `tfdlgm train` command holds its checkpoint folder
    and `tfdlgm.training.train` holds it again inside); any other thread or process is
    refused at once. Local file systems only: on NFS, `flock` is as reliable as the server's
    locks. Where `fcntl` does not exist (Windows) nothing is locked.

    Args:
        folder: str or path-like, the folder to own.

    Yields:
        The folder, as a `pathlib.Path`.

    Raises:
        FolderInUseError: (a `RuntimeError`) if another thread or process holds `folder`.
        NotADirectoryError: if `folder` is a file.
    """
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder: choose another folder.")
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    held = _held.__dict__.setdefault("folders", {})
    if key in held or fcntl is None:
        held[key] = held.get(key, 0) + 1
        try:
            yield folder
        finally:
            held[key] -= 1
            if not held[key]:
                del held[key]
        return
    lock = folder / LOCK_FILE
    handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 1024, 0).decode("utf-8", "replace").strip() or "unknown"
            raise FolderInUseError(
                f"{folder} is in use by another run ({holder}, as {lock} says): wait for "
                "it to end or stop it, or choose another folder.",
                folder,
                holder,
            ) from None
        os.ftruncate(handle, 0)
        # The owner's line is what a refused second run names; on a full disk the lock holds
        # without it (that run says "unknown"), and the run's own writes report the disk.
        with contextlib.suppress(OSError):
            os.pwrite(handle, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        held[key] = 1
        try:
            yield folder
        finally:
            del held[key]
            os.ftruncate(handle, 0)
    finally:
        os.close(handle)  # releases the flock


def remove_temporaries(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Removes the temporary `.tmp-*` files that killed `atomic_write`s left in `folder`.

    Call it only while holding `folder` (`hold_folder`): another live writer's temporary
    files are in use.

    Returns:
        The files removed.
    """
    removed = []
    for path in pathlib.Path(folder).glob(f"{TEMPORARY_PREFIX}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
