"""Shared fixtures. Models are built or converted once per test session, in a temporary cache."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest


def _offline_cache(mp: pytest.MonkeyPatch, cache: Path) -> None:
    mp.setenv("SHPERS_CACHE", str(cache))
    mp.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads HF_HUB_OFFLINE once, at import.
    mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory) -> Path:
    """A session-wide ``SHPERS_CACHE``: the SmolLM2 conversion and tiny-qwen2 build happen once, cold."""
    return tmp_path_factory.mktemp("shpers-cache")


@pytest.fixture
def shpers_cache(models_cache, monkeypatch) -> Path:
    """Point ``SHPERS_CACHE`` at the session cache and keep the hub offline for one test."""
    _offline_cache(monkeypatch, models_cache)
    return models_cache


@pytest.fixture(scope="session")
def tiny_base(models_cache) -> Iterator:
    """``load_base("tiny-qwen2")`` on the CPU in float32 (tests that compare numbers pick their dtype);
    shared, so tests must not change its weights."""
    from shpers_core.models import load_base

    with pytest.MonkeyPatch.context() as mp:
        _offline_cache(mp, models_cache)
        yield load_base("tiny-qwen2", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def smollm2_base(models_cache) -> Iterator:
    """The embedded SmolLM2 on the CPU in fp32 (converted from its GGUF on first use); shared, read-only."""
    from shpers_core.models import load_base

    with pytest.MonkeyPatch.context() as mp:
        _offline_cache(mp, models_cache)
        yield load_base("smollm2-135m-instruct", device="cpu", dtype="float32")


@pytest.fixture(autouse=True)
def no_unanswered_dialogs(monkeypatch) -> None:
    """A modal dialog in a headless test waits for a click forever, past pytest-timeout, whose alarm cannot
    interrupt Qt's event loop: one the test did not answer (by patching it) fails the test instead."""
    widgets = sys.modules.get("PySide6.QtWidgets")
    if widgets is None:  # an engine-only run: no Qt to guard
        return

    def unanswered(owner: str, name: str):
        def fail(*args, **_kwargs):
            shown = " | ".join(str(a) for a in args if isinstance(a, str))
            raise AssertionError(f"{owner}.{name} opened a modal dialog the test did not answer: {shown}")
        return fail

    for owner, names in (("QMessageBox", ("question", "warning", "information", "critical")),
                         ("QFileDialog", ("getSaveFileName", "getOpenFileName", "getExistingDirectory")),
                         ("QInputDialog", ("getText", "getItem", "getInt"))):
        for name in names:
            monkeypatch.setattr(getattr(widgets, owner), name, unanswered(owner, name))


def pytest_collection_modifyitems(config, items) -> None:
    """Run the tests that make this process a Ray driver last, each file's order kept.

    After ``ray.shutdown()`` Ray's fatal-signal handler stays in the process in place of Python's
    faulthandler: a segfault in any later test (2026-12-06: a cycle collected on a worker thread, see
    ``shpers_gui.workers.gc_guard``) then printed no traceback at all.
    """
    items.sort(key=lambda item: item.path.name == "test_distributed_ray.py")


@pytest.fixture(autouse=True)
def _collect_cycles_on_the_main_thread() -> Iterator[None]:
    """An app window or worker turns automatic collection off and collects on its GUI thread's timer
    (``shpers_gui.workers.gc_guard``). After such a test, collect its garbage here, on the main
    thread, and turn automatic collection back on for tests that never start the app."""
    yield
    if not gc.isenabled():
        gc.collect()
        gc.enable()
