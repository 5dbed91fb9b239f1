"""Two rough app measurements (run on a quiet machine; compare numbers from one run only).

``python resources/measure_app.py map-stall [N_PERSONAS]``: the longest event-loop gap of a 10 ms
timer while the persona map computes behaviour features for a fresh synthetic dataset. torch and
sentence-transformers are imported first: their first import in a worker holds the GIL for about a
second once per process (the app pays it at start, when it asks the device), not per computation.

``python resources/measure_app.py chat-batch WORKSPACE RUN_A RUN_B PERSONA``: two chat replies in one
mixed-adapter batch against the same two one after the other.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

try:
    import shpers_gui  # noqa: F401
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def map_stall(n_personas: int) -> None:
    import sentence_transformers  # noqa: F401 - see the module docstring
    import torch  # noqa: F401
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from shpers_core.data import generate_dataset, split_dataset
    from shpers_gui.widgets.persona_map import compute_persona_map
    from shpers_gui.workers import run_call

    app = QApplication.instance() or QApplication([])
    dataset = generate_dataset(n_personas=n_personas, dialogues_per_persona=30)
    gaps, last, done, progress = [], [time.perf_counter()], [], []

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    start = time.perf_counter()
    worker = run_call(compute_persona_map, dataset, split_dataset(dataset, seed=0), "behaviour", 5, 0,
                      Path(tempfile.mkdtemp()), stream=True, on_chunk=lambda c: progress.append(c[0] == "progress"))
    worker.signals.done.connect(lambda: done.append(1))
    while not done:
        app.processEvents()
        time.sleep(0.001)
    gaps.sort()
    print(f"{n_personas} personas x 30 dialogues, behaviour features: {time.perf_counter() - start:.1f} s, "
          f"{sum(progress)} progress updates, longest event-loop gap {gaps[-1] * 1000:.0f} ms, "
          f"99th percentile {gaps[int(len(gaps) * 0.99)] * 1000:.0f} ms")


def chat_batch(root: str, run_a: str, run_b: str, persona: str) -> None:
    from shpers_core.data import Message
    from shpers_core.jobs.chat import ChatSession, stream_together
    from shpers_core.workspace import Workspace

    ws = Workspace.open(root)
    a = ChatSession(ws, run_a, persona, max_new_tokens=48)
    b = ChatSession(ws, run_b, persona, max_new_tokens=48)
    history = [Message("user", "Turn on the kitchen lights and set them to 40 percent, please.")]
    list(stream_together([a, b], [history, history]))  # first calls pay for lazy initialisation
    for _ in range(3):
        t = time.perf_counter()
        list(stream_together([a, b], [history, history]))
        together = time.perf_counter() - t
        t = time.perf_counter()
        list(stream_together([a], [history]))
        list(stream_together([b], [history]))
        apart = time.perf_counter() - t
        print(f"two replies in one batch {together:.2f} s, one after the other {apart:.2f} s "
              f"(ratio {apart / together:.2f})")


def main(argv: list[str]) -> int:
    if argv[:1] == ["map-stall"]:
        map_stall(int(argv[1]) if len(argv) > 1 else 40)
    elif argv[:1] == ["chat-batch"] and len(argv) == 5:
        chat_batch(*argv[1:])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
