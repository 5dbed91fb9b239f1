"""How many CPU threads a process computes with, so that jobs and chat do not starve each other.

A job alone uses one thread per physical core (hyper-threads share a core's matrix units and only
add contention). Every process that computes registers itself in a folder of the cache
(``busy/<pid>``); one that starts while another is registered takes a single thread, and the
OpenMP runtime waits passively (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning, because two
spinning thread pools on the same cores slow each other several times over.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import shpers_core
from shpers_core.store.host import pid_alive
from shpers_core.workspace import cache_dir

log = logging.getLogger(__name__)


def physical_cores() -> int:
    """Physical cores of this machine (from /proc/cpuinfo; else the logical CPU count)."""
    try:
        cores = set()
        phys = core = None
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
        if core is not None:
            cores.add((phys, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def set_passive_wait() -> None:
    """Make OpenMP threads sleep when idle; takes effect in processes started after this call."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _busy_dir() -> Path:
    path = cache_dir() / "busy"
    path.mkdir(parents=True, exist_ok=True)
    return path


def other_busy_processes() -> int:
    """Other live processes computing now (stale entries of dead ones are removed)."""
    count = 0
    try:
        entries = list(_busy_dir().iterdir())
    except OSError:
        return 0
    for entry in entries:
        try:
            pid = int(entry.name)
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        if pid_alive(pid) is not False:  # a process we cannot probe counts as busy
            count += 1
        else:
            entry.unlink(missing_ok=True)
    return count


def threads_now() -> int:
    """Threads for work starting now: all physical cores when nothing else computes, else one."""
    return 1 if other_busy_processes() else physical_cores()


_depth = 0
_warned = False


def _warn_if_spinning() -> None:
    """Say once why sharing the cores is slow in a program that imported torch before the engine."""
    global _warned
    if _warned or not shpers_core.SPINNING_THREADS or not other_busy_processes():
        return
    _warned = True
    log.warning("torch was imported before shpers_core, so its OpenMP threads spin while idle and this "
                "process and the other one computing now slow each other several times over (a chat reply "
                "beside a training job took 5-20 s instead of 1.3 s); set OMP_WAIT_POLICY=PASSIVE before "
                "importing torch, or import shpers_core first")


@contextmanager
def computing(threads: int | None = None, *, register: bool = True) -> Iterator[int]:
    """Set torch's threads (``threads`` or :func:`threads_now`) and, with ``register``, count this
    process as computing for the others. Chat does not register: a reply is short, and a job that
    starts meanwhile should not keep one thread for hours because of it.

    Re-entrant: a job inside a study, or a source run inside a job, keeps the outer setting.
    """
    # lazy: torch; threads.py is imported at start-up by the CLI and the app
    import torch

    global _depth
    set_passive_wait()
    if _depth:
        _depth += 1
        try:
            yield torch.get_num_threads()
        finally:
            _depth -= 1
        return
    n = threads or threads_now()
    _warn_if_spinning()
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    marker: Path | None = None
    if register:
        try:
            marker = _busy_dir() / str(os.getpid())
            marker.touch()
        except OSError:
            marker = None  # a read-only cache: run anyway, unregistered
    _depth = 1
    try:
        yield n
    finally:
        _depth = 0
        if marker is not None:
            marker.unlink(missing_ok=True)
        torch.set_num_threads(before)
