"""How long the GUI event loop stalls while a training job runs: the app's responsiveness benchmark.

A 10 ms QTimer ticks in the full main window while a tiny job runs through the job queue (child
process, relay thread, live loss plot, tables); the largest gap between ticks beyond the timer's
interval is the longest time the user would have waited for the window to react.

``python -m shpers_gui.bench_responsiveness [--workspace DIR]`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

TICK_MS = 10


def measure_stall(window, spec, timeout_s: float = 300.0) -> dict:
    """Run ``spec`` through ``window``'s queue and time the event loop until the job ends."""
    from PySide6.QtCore import QEventLoop, QTimer

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    loop = QEventLoop()
    queue = window.session.jobs
    started = time.perf_counter()
    timer.start()
    last[0] = time.perf_counter()
    job = queue.submit(spec)
    queue.job_ended.connect(lambda j: loop.quit() if j is job else None)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    timer.stop()
    stalls = sorted(max(0.0, g * 1000 - TICK_MS) for g in gaps)
    return {
        "job_status": job.status,
        "job_seconds": round(time.perf_counter() - started, 2),
        "ticks": len(gaps),
        "max_stall_ms": round(stalls[-1], 1) if stalls else None,
        "p99_stall_ms": round(stalls[int(0.99 * (len(stalls) - 1))], 1) if stalls else None,
        "stalls_over_100ms": sum(s > 100 for s in stalls),
    }


def run_benchmark(root: str | Path | None = None) -> dict:
    """Open the window on a small workspace and measure one tiny unified-LoRA job."""
    import pyqtgraph as pg
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from shpers_core.data import generate_dataset, write_jsonl
    from shpers_core.jobs.spec import build_spec
    from shpers_core.workspace import Workspace
    from shpers_gui.main_window import MainWindow
    from shpers_gui.session import Session

    pg.setConfigOptions(antialias=True, foreground="k")
    app = QApplication.instance() or QApplication([])
    tmp = tempfile.TemporaryDirectory()
    ws = Workspace.open(root or tmp.name)
    if not ws.dataset_path.exists():
        ws.dataset_path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(generate_dataset(n_personas=4, dialogues_per_persona=8), ws.dataset_path)
    session = Session(ws.root)
    window = MainWindow(session, settings=QSettings(str(Path(tmp.name) / "s.ini"), QSettings.Format.IniFormat),
                        ask_on_close=False)
    window.show()
    window.start()
    deadline = time.monotonic() + 60
    while session.dataset is None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    # Startup work (the persona map's embeddings, the device probe) is not what is measured.
    from PySide6.QtCore import QThreadPool

    while QThreadPool.globalInstance().activeThreadCount() and time.monotonic() < deadline + 120:
        app.processEvents()
        time.sleep(0.01)
    window.tabs.setCurrentWidget(window.jobs)
    spec = build_spec("unified_lora", {"train.num_epochs": 3, "eval.max_new_tokens": 8,
                                       "eval.max_test_dialogues": 1}, base_model="tiny-qwen2", name="bench")
    result = measure_stall(window, spec)
    window.close()
    tmp.cleanup()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="workspace to use (default: a temporary one)")
    args = parser.parse_args(argv)
    print(json.dumps(run_benchmark(args.workspace)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
