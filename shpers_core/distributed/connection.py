"""Joining a Ray cluster: below ``ray_executor`` (which runs jobs, so sits above ``jobs/``), so that
the trainers ``methods/`` call on Ray (``shards``, ``data_parallel``) can connect without importing it."""

from __future__ import annotations

import logging
import signal
import socket
import threading

from shpers_core.errors import UserError


class ClusterError(UserError):
    """The Ray cluster cannot be reached or lacks what a job asks for."""


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's minute of retries, when nothing listens at ``host:port``."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address`` (host:port of its head), or start a local one without it.

    A process stays connected; a second call reuses the connection.
    """
    try:
        # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
        import ray
    except ImportError:
        raise ClusterError("Ray is not installed: pip install 'shpers[ray]' (or 'ray[train]')") from None
    if address and address != "auto":
        _check_reachable(address)
    if ray.is_initialized():
        return
    # ray.init replaces the SIGTERM handler with one that exits the process; the caller's handler
    # (`shpers runs cancel` sends SIGTERM) stops the job with a checkpoint instead, so it is put back.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ClusterError(f"cannot reach the Ray cluster at {address or 'a new local instance'}: {first}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
