"""Cycles holding Qt objects are collected on the GUI thread only, never on a worker thread."""

from __future__ import annotations

import gc
import threading

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QWidget  # noqa: E402

from shpers_gui.workers import run_call  # noqa: E402

pytestmark = pytest.mark.gui


class _Cycle:
    def __init__(self, collected: list[str]):
        self.me = self
        self.widget = QWidget()  # a Qt object that must die on the GUI thread
        self.collected = collected

    def __del__(self):
        self.collected.append(threading.current_thread().name)


def test_garbage_made_while_a_worker_allocates_is_collected_on_the_gui_thread(qtbot):
    collected: list[str] = []
    done: list[object] = []
    # The first worker turns automatic collection off; its timer then collects on this thread.
    run_call(lambda: None, on_result=done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=5000)
    assert not gc.isenabled()
    _Cycle(collected)
    # A worker that keeps far more new objects than generation 0's threshold would have collected
    # the cycle itself, on its own thread.
    run_call(lambda: [[i] for i in range(100_000)], on_result=done.append)
    qtbot.waitUntil(lambda: len(done) == 2, timeout=5000)
    assert collected == []
    qtbot.waitUntil(lambda: bool(collected), timeout=5000)  # the GUI thread's timer, within about a second
    assert collected == [threading.main_thread().name]
