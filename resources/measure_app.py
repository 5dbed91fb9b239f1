"""Two rough app measurements (run on a quiet machine; compare numbers from one run only).

``python resources/measure_app.py map-stall [N_PERSONAS]``: the longest event-loop gap of a 10 ms
timer while the persona map computes behaviour features for a fresh synthetic dataset. torch and
sentence-transformers are imported first: their first import in a worker holds the GIL for about a
second once per process (the app pays it at start, when it asks the device), not per computation.

``python resources/measure_app.py chat-batch WORKSPACE RUN_A RUN_B PERSONA``: two chat replies in one
mixed-adapter batch against the same two one after the other.

``python resources/measure_app.py chat-beside-job WORKSPACE RUN PERSONA``: chat replies while a
SmolLM2 training loop (forward and backward, registered as a computing job) runs in another process,
with one thread (what chat does) against every core (what the Chat tab did before 2026-12-07); the
seconds a reply and the loop's median step in each 20-second round.
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


def train_loop(seconds: float) -> None:
    import torch

    from shpers_core.models.registry import load_base
    from shpers_core.threads import computing

    model = load_base("smollm2-135m-instruct", "cpu", "float32").model
    model.requires_grad_(False)
    ids = torch.randint(100, 5000, (4, 128))
    with computing() as threads:
        print("threads", threads, flush=True)
        end = time.time() + seconds
        while time.time() < end:
            embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
            model(inputs_embeds=embeds, labels=ids).loss.backward()
            print("step", time.time(), flush=True)


def chat_beside_job(root: str, run_id: str, persona: str) -> None:
    import statistics
    import subprocess

    from shpers_core.data import Message
    from shpers_core.evaluation.streaming import stream_rows
    from shpers_core.jobs.chat import ChatSession, stream_together
    from shpers_core.threads import computing, physical_cores
    from shpers_core.workspace import Workspace

    session = ChatSession(Workspace.open(root), run_id, persona, max_new_tokens=64)
    asks = ["Turn on the lights in the kitchen", "What's the weather like?", "Set the thermostat to 21 degrees",
            "Tell me a long story about the living room lamp"]

    def every_core(ask: str) -> None:
        with computing(physical_cores(), register=False):
            list(stream_rows(session.base, [(session.plan, persona, [Message("user", ask)], session.system_prompt)], 64))

    def one_thread(ask: str) -> None:
        list(stream_together([session], [[Message("user", ask)]]))

    job = subprocess.Popen([sys.executable, __file__, "train-loop", "230"], stdout=subprocess.PIPE, text=True)
    print(job.stdout.readline().strip(), "in the training loop")
    time.sleep(25)
    alone_until, rounds = time.time(), []
    for _ in range(2):
        for name, reply in (("every core", every_core), ("one thread", one_thread)):
            start, replies = time.time(), 0
            while time.time() - start < 20:
                for ask in asks:
                    reply(ask)
                replies += len(asks)
            rounds.append((name, start, time.time(), replies))
            time.sleep(8)
    job.wait()
    steps = [float(line.split()[1]) for line in job.stdout if line.startswith("step")]

    def median_step(a: float, b: float) -> str:
        inside = [t for t in steps if a <= t <= b]
        gaps = [y - x for x, y in zip(inside, inside[1:])]
        return f"{statistics.median(gaps):.2f} s" if gaps else "no two steps"

    print(f"training loop alone: step {median_step(alone_until - 20, alone_until)}")
    for name, a, b, replies in rounds:
        print(f"chat on {name}: {(b - a) / replies:.2f} s a reply ({replies} replies); "
              f"training step {median_step(a, b)}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["map-stall"]:
        map_stall(int(argv[1]) if len(argv) > 1 else 40)
    elif argv[:1] == ["chat-batch"] and len(argv) == 5:
        chat_batch(*argv[1:])
    elif argv[:1] == ["chat-beside-job"] and len(argv) == 4:
        chat_beside_job(*argv[1:])
    elif argv[:1] == ["train-loop"] and len(argv) == 2:
        train_loop(float(argv[1]))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
