"""The worker side's checkpoint watcher: below ``worker`` (which runs jobs, so sits above ``jobs/``),
so that ``data_parallel``, which ``methods/`` call, can use it."""

from __future__ import annotations

import threading
from pathlib import Path

from shpers_core.distributed.transfer import pack, read_tree


class CheckpointWatcher(threading.Thread):
    """Sends each checkpoint or adapter folder of a run to the driver once it is complete and new."""

    def __init__(self, root: Path, run_id: str, send, every_s: float = 1.0, shared: Path | None = None):
        super().__init__(daemon=True)
        self.root, self.run_id, self.send, self.every_s, self.shared = root, run_id, send, every_s, shared
        self._sent: dict[str, tuple] = {}
        self._done = threading.Event()

    def _signature(self, folder: Path) -> tuple:
        return tuple(sorted((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                            for p in folder.rglob("*") if p.is_file()))

    def scan(self) -> None:
        for part in ("checkpoints", "adapters"):
            base = self.root / "runs" / self.run_id / part
            if not base.is_dir():
                continue
            for folder in base.iterdir():
                if folder.name.startswith(".") or not folder.is_dir():
                    continue
                try:
                    sig = self._signature(folder)
                    if not sig or self._sent.get(folder.name + part) == sig:
                        continue
                    files = read_tree(self.root, folder.relative_to(self.root))
                    if self._signature(folder) != sig:
                        continue  # replaced while read: the next scan takes the new one
                except OSError:
                    continue  # renamed away mid-scan by an atomic write
                self.send(pack(files, self.shared))
                self._sent[folder.name + part] = sig

    def run(self) -> None:
        while not self._done.wait(self.every_s):
            self.scan()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=60)
