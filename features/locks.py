"""One writer at a time for each output: a lock file beside it, safe on shared cluster filesystems.

`WriteLock(target)` creates `<target>.lock` atomically (O_CREAT | O_EXCL, which NFS honours), holding the
writer's host, pid and start time, and keeps its modification time fresh from a background thread while
the writer lives; `fcntl.lockf` on it as well, where the filesystem supports it. A second writer refuses
at once, naming the holder and how long it has held the lock. A lock whose holder is gone is taken over
with a warning: on the same host when its process is dead (or its fcntl lock is free), elsewhere when its
heartbeat is older than `timeout` seconds. Readers never lock: they only ever open finished files.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

from vidprobe.features.errors import LockHeld

try:
    import fcntl
except ImportError:  # not on this platform: the pid and the heartbeat decide
    fcntl = None


class WriteLock:
    """Exclusive write access to `target` (a file or a folder) for as long as the lock is held."""

    def __init__(self, target: str | Path, timeout: float = 600.0, what: str = ""):
        self.target, self.timeout, self.what = Path(target), timeout, what or str(target)
        self.path = self.target.with_name(self.target.name + ".lock")
        self.fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock removed, then created again: another take-over may race us once
            try:
                self.fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_abandoned()
                continue
            if fcntl is not None:  # before the holder is written: whoever can read it finds it locked
                with contextlib.suppress(OSError):  # no fcntl locks on this filesystem: the pid and the heartbeat serve
                    fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(
                self.fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}).encode()
            )
            os.fsync(self.fd)
            interval = max(1.0, min(30.0, self.timeout / 4))
            self._beat = threading.Thread(target=self._heartbeat, args=(interval,), daemon=True)
            self._beat.start()
            return
        raise LockHeld(f"{self.what}: could not take {self.path} (other writers keep taking it over)")

    def release(self) -> None:
        if self.fd is None:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None

    def _heartbeat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _take_over_if_abandoned(self) -> None:
        holder = self.holder()
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile: try again
        gone = age > self.timeout or (holder.get("host") == socket.gethostname() and self._dead(holder))
        if not gone and holder:
            held = time.time() - holder.get("started", time.time())
            raise LockHeld(
                f"{self.what} is being written by {holder.get('host')} pid {holder.get('pid')} "
                f"(for {held:.0f} s, heartbeat {age:.0f} s ago): wait for it to finish; if that process "
                f"is gone, the lock is taken over after {self.timeout:.0f} s without a heartbeat, or "
                f"remove {self.path}"
            )
        if not holder and age < 5.0:
            raise LockHeld(f"{self.what}: another writer is taking {self.path} right now; try again")
        print(f"warning: taking over {self.path}: its writer ({holder.get('host')} pid {holder.get('pid')}) is gone")
        self.path.unlink(missing_ok=True)

    def _dead(self, holder: dict) -> bool:
        """On this host: the holder's process has exited (or holds no fcntl lock any more)."""
        pid = holder.get("pid")
        if pid == os.getpid():
            return False  # this very process holds it (and probing would drop its fcntl lock: POSIX semantics)
        try:
            os.kill(int(pid), 0)
        except (TypeError, ValueError, ProcessLookupError):
            return True
        except PermissionError:
            pass  # alive, someone else's
        if fcntl is None:
            return False
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held (alive), or no fcntl locks here (cannot tell: the pid is alive)
        else:
            return True  # nobody holds it: the pid is alive but belongs to another process now
        finally:
            os.close(fd)
