"""A child process's peak memory, its workers included: shared by the benchmarks that run `vidprobe` commands."""

from __future__ import annotations

import subprocess
import threading
import time


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (from /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


def wait_watching(proc: subprocess.Popen, every: float = 0.05) -> tuple[int, float]:
    """Wait for `proc`: (exit code, peak RSS in MB of its process tree, sampled every `every` seconds)."""
    peak, stop = 0.0, threading.Event()

    def watch():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_mb(proc.pid))
            time.sleep(every)

    watcher = threading.Thread(target=watch)
    watcher.start()
    code = proc.wait()
    stop.set()
    watcher.join()
    return code, peak
