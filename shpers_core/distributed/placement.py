"""Where a job runs: the worker's report, the log line the driver keeps of it, and what the Jobs tab shows."""

from __future__ import annotations

from dataclasses import dataclass, field

from shpers_core.events import Event


@dataclass(frozen=True)
class Placed(Event):
    """Where a job runs: the Ray node (id and address), the worker's process id and the GPUs Ray gave it."""

    node: str
    pid: int
    gpus: tuple = ()
    attempt: int = 1
    ip: str = ""
    kind: str = field(init=False, default="placed")

    @property
    def where(self) -> str:
        """"Ray node 10.0.0.5 (GPU 0)" or "... (CPU)": what the Jobs tab shows."""
        n = len(self.gpus)
        device = f"GPU{'s' if n > 1 else ''} {', '.join(self.gpus)}" if n else "CPU"
        return f"Ray node {self.ip or self.node} ({device})"


THIS_MACHINE = "this machine"
PLACED_PREFIX = "running on "
"""The driver logs each attempt's placement as "running on WHERE; node ..."; the store keeps it."""


def placement_line(placed: Placed) -> str:
    return (f"{PLACED_PREFIX}{placed.where}; node {placed.node}, worker process {placed.pid}, "
            f"attempt {placed.attempt}")


def placement_in(message: str) -> str | None:
    """The WHERE of a :func:`placement_line`, or None for any other log line."""
    if not message.startswith(PLACED_PREFIX + "Ray node ") or "; node " not in message:
        return None
    return message[len(PLACED_PREFIX):].split("; node ", 1)[0]


def stored_placement(store, run_id: str) -> str:
    """Where the run ran last, from its log: a Ray node, or :data:`THIS_MACHINE`.

    A placement logged before the run's latest start belongs to an earlier attempt (a Ray run
    resumed here), so it does not count.
    """
    run = store.get_run(run_id)
    for line in reversed(store.logs(run.id)):
        where = placement_in(line.message)
        if where is not None:
            return where if not run.started_at or line.ts >= run.started_at else THIS_MACHINE
    return THIS_MACHINE
