"""One writer per folder: a profile or run folder is locked while a command writes to it.

The lock is a file ``.lock`` in the folder, created exclusively, holding the writer's PID, host and start
time. A second writer is refused in one line naming them; a lock whose process is gone (killed, crashed)
on this host is stale and taken over. Two profiling runs in one folder would otherwise interleave their
rows.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from latbench.errors import LatbenchError

LOCK_FILE = ".lock"


class FolderBusyError(LatbenchError):
    """Another live process is writing to the folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class FolderLock:
    """``with FolderLock(folder):`` holds the folder's lock for the block (``what`` names the work)."""

    def __init__(self, folder: str | Path, what: str = "a latbench command") -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_FILE
        self.held = False

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale():
                    raise
                self.path.unlink(missing_ok=True)  # the writer is gone: take its lock over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            self.held = True
            return self
        raise FolderBusyError(f"cannot lock {self.folder}: its lock file keeps coming back")

    def _stale(self) -> bool:
        """False (and a one-line error) while the lock's writer runs; True when it is gone."""
        try:
            other = json.loads(self.path.read_text())
            pid, host = int(other["pid"]), str(other.get("host", ""))
        except (OSError, ValueError, KeyError, TypeError):
            return True  # unreadable or half-written by a writer that died at once
        if host == socket.gethostname() and not _alive(pid):
            return True
        if pid == os.getpid() and host == socket.gethostname():
            raise FolderBusyError(f"{self.folder} is already locked by this process ({other.get('what')})")
        raise FolderBusyError(f"{self.folder} is being written by {other.get('what', 'another command')} "
                              f"(PID {pid} on {host}, since {other.get('started', '?')}); wait for it or stop it")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
