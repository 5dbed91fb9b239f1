"""A Ray actor that carries a remote job's events to the driver and the driver's stop request back.

A worker never writes the driver's store: it puts events (and checkpoint files) on the channel; the
driver takes them and feeds its own sinks, exactly as it does for a local child process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from shpers_core.events import Event, Reporter


class _Channel:
    """Kept in one actor: calls run one at a time, in the order each caller made them."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._stop = False

    def put(self, item: Any) -> None:
        self._items.append(item)

    def take(self) -> list[Any]:
        out, self._items = self._items, []
        return out

    def request_stop(self) -> None:
        self._stop = True

    def stop_requested(self) -> bool:
        return self._stop

    def ping(self) -> bool:
        return True


def new_channel():
    """A channel actor; it holds no CPU, so it never keeps a job from being scheduled."""
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray

    return ray.remote(num_cpus=0, max_restarts=0)(_Channel).remote()


class RemoteReporter(Reporter):
    """The reporter a job gets on a worker: events go to ``channel``; a stop asked on the driver is
    seen within ``poll_s`` (a thread polls, so a training step never waits on the network)."""

    def __init__(self, channel, poll_s: float = 0.5, extra_sink: Callable[[Event], None] | None = None):
        super().__init__(self._send)
        self._channel = channel
        self._extra = extra_sink
        self._remote_stop = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(poll_s,), daemon=True)
        self._thread.start()

    def _send(self, event: Event) -> None:
        self._channel.put.remote(("event", event))
        if self._extra is not None:
            self._extra(event)

    def send(self, item: tuple) -> None:
        """Anything else for the driver (files, the worker's whereabouts)."""
        self._channel.put.remote(item)

    def _poll(self, poll_s: float) -> None:
        # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
        import ray

        while not self._closed.wait(poll_s):
            try:
                if ray.get(self._channel.stop_requested.remote(), timeout=30):
                    self._remote_stop.set()
            except Exception:  # noqa: BLE001 - a lost driver shows as no stop; Ray ends the task anyway
                pass

    def should_stop(self) -> bool:
        return self._remote_stop.is_set() or super().should_stop()

    def close(self) -> None:
        """Wait until everything sent has reached the channel, then stop polling."""
        # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
        import ray

        self._closed.set()
        ray.get(self._channel.ping.remote(), timeout=120)
