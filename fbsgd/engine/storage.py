"""Files the engine and the book write: atomically (a temporary file in the same folder, then a
rename), so a reader sees the old file or the complete new one, never a partial one."""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

__all__ = ["atomic_write_bytes", "current_umask"]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it where the system allows.

    Linux (4.7+) reports it in /proc/self/status ("Umask:"), which leaves the process alone.
    Elsewhere the only way is ``os.umask``, which sets the mask while it reads it: the mask is
    process-wide, so a file another thread creates in between would get the temporary mask.
    The swap is held under a lock (against our own threads) and uses 0o077, so such a file
    could only come out more private than intended, never more open.  Read once per call,
    so a umask the caller changes later is honoured.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename:
    readers see the old file or the complete new one, never a partial file.

    The file gets the permissions a plain ``open(path, "w")`` would give (0o666 minus the
    umask, e.g. 0o644 under umask 0o022), not the 0o600 of ``tempfile.mkstemp``: results
    and cache entries stay readable by the other users and workers the umask allows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            else:  # Windows before Python 3.13: only the read-only bit is honoured anyway
                os.chmod(tmp, mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
