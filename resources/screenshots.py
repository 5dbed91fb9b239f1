"""Open the real window on a workspace with a few finished runs and save a PNG of each tab.

``python resources/screenshots.py OUTDIR [--workspace DIR]``. Without ``--workspace`` a
workspace under the system temp folder is built once (12 personas; a tiny LoRA run for loss
curves, the embedded SmolLM2 with and without the persona in the system prompt for real
replies) and reused by later calls. Run it under ``xvfb-run`` where there is no display.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

try:
    import shpers_gui  # noqa: F401
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PERSONAS = 12
CHAT_PERSONAS = ["persona_000", "persona_001", "persona_002", "persona_003", "persona_004", "persona_005"]
# Runs shown side by side, first pair present wins: a `make study` workspace, then our own.
PAIRS = [("Unified LoRA", "Unified + learned persona prefix"), ("Unified LoRA", "Per-persona LoRA"),
         ("Base SmolLM2", "SmolLM2 + persona prompt")]
# Asked in the Chat tab of a study workspace: the input's own example, then everyday requests.
EXAMPLE_REQUESTS = ["turn on the lights in the kitchen", "What is the weather like today?",
                    "Set the thermostat to 21 degrees"]
STORED_CURVES = ["Cluster LoRA (description)", "Unified LoRA", "Unified LoRA (tiny)"]


def prepare(root: Path) -> None:
    """Dataset and runs, made once; a workspace that already has finished runs is left as it is."""
    from shpers_core.data import generate_dataset, write_jsonl
    from shpers_core.events import CollectingReporter
    from shpers_core.jobs.runner import run_job
    from shpers_core.jobs.spec import build_spec
    from shpers_core.store import RunStore
    from shpers_core.workspace import Workspace

    ws = Workspace.open(root)
    if not ws.dataset_path.exists():
        ws.dataset_path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(generate_dataset(n_personas=PERSONAS, dialogues_per_persona=10), ws.dataset_path)
    with RunStore(ws.db_path) as store:
        if len(store.list_runs(status="finished")) >= 3:
            return
    evals = {"eval.max_test_dialogues": 1, "eval.max_new_tokens": 24}
    jobs = [
        build_spec("unified_lora", {"train.num_epochs": 3, **evals}, base_model="tiny-qwen2",
                   name="Unified LoRA (tiny)"),
        build_spec("base_model", evals, base_model="smollm2-135m-instruct", personas=CHAT_PERSONAS,
                   name="Base SmolLM2"),
        build_spec("system_prompt", evals, base_model="smollm2-135m-instruct", personas=CHAT_PERSONAS,
                   name="SmolLM2 + persona prompt"),
    ]
    for spec in jobs:
        print(f"running {spec.name}…", flush=True)
        run_job(spec, ws, CollectingReporter())


def wait(app, condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)


def settle(app, seconds: float = 0.4) -> None:
    wait(app, lambda: False, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--workspace", help="default: a reusable folder under the temp directory")
    parser.add_argument("--size", default="1500x940", help="window size WIDTHxHEIGHT (default 1500x940)")
    args = parser.parse_args(argv)
    width, height = (int(x) for x in args.size.lower().split("x"))
    root = Path(args.workspace or Path(tempfile.gettempdir()) / "shpers-screenshots")
    prepare(root)

    import pyqtgraph as pg
    from PySide6.QtCore import QSettings, QThreadPool
    from PySide6.QtWidgets import QApplication, QMessageBox

    from shpers_gui.main_window import MainWindow
    from shpers_gui.session import Session

    pg.setConfigOptions(antialias=True, foreground="k")
    app = QApplication.instance() or QApplication([])
    settings = QSettings(str(Path(tempfile.gettempdir()) / "shpers-screenshots.ini"), QSettings.Format.IniFormat)
    settings.clear()
    session = Session(root)
    window = MainWindow(session, settings=settings, ask_on_close=False)
    # Nobody is there to answer: a taken run name or a long job's confirmation is accepted.
    QMessageBox.question = staticmethod(lambda *_a, **_k: QMessageBox.StandardButton.Yes)
    window.resize(width, height)
    window.show()
    window.start()
    wait(app, lambda: session.dataset is not None, 60)
    wait(app, lambda: window.personas.map.data is not None, 120)
    wait(app, lambda: not QThreadPool.globalInstance().activeThreadCount(), 60)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    store = session.store()
    runs = {}
    for r in reversed(store.list_runs(status="finished")):  # oldest first: a study's own row before a sweep's
        # A study whose epochs were cut names its rows "Unified LoRA (1 of 3 epochs)": file them under
        # the row's name too, so a quick-study workspace finds its pairs.
        runs.setdefault(r.name, r)
        runs.setdefault(r.name.split(" (")[0], r)

    def shot(name: str) -> None:
        settle(app)
        path = out / f"{name}.png"
        window.grab().save(str(path))
        print(f"saved {path}", flush=True)

    window.tabs.setCurrentWidget(window.personas)
    window.personas.select_persona("persona_003")
    shot("1-personas")

    window.tabs.setCurrentWidget(window.launcher)
    window.launcher.set_method("cluster_lora")
    window.launcher.base_model.setCurrentText("tiny-qwen2")
    window.launcher.set_personas(CHAT_PERSONAS)
    window.launcher.sweep_values.setText("1e-4, 5e-4, 1e-3")
    shot("2-launch")

    # A live job beside a stored run's curves.
    window.launcher.set_method("unified_lora")
    window.launcher.form.set_values({"train.num_epochs": 40, "eval.max_new_tokens": 8, "eval.max_test_dialogues": 1})
    window.launcher.run_name.setText("Unified LoRA (tiny, live)")
    [job] = window.launcher.queue_job()
    window.launcher.run_name.clear()
    window.launcher.form.set_values({"train.num_epochs": 1})
    window.launcher.queue_job()
    stored = next((runs[n] for n in STORED_CURVES if n in runs), None)
    if stored is not None:
        window.jobs.show_stored_curves(stored.id)
    wait(app, lambda: job.done >= 30 or job.status not in ("waiting", "running"), 180)
    window.tabs.setCurrentWidget(window.jobs)
    window.jobs.table.selectRow(0)
    shot("3-jobs")
    window.session.jobs.cancel_all_and_wait()
    # The live jobs were for the picture: delete their runs, so later calls do not pile up "(2)", "(3)".
    from shpers_core.jobs.delete import delete_run

    for queued in window.session.jobs.jobs:
        if queued.run_id:
            delete_run(session.workspace, store, queued.run_id)
    window.session.runs_changed.emit()

    window.tabs.setCurrentWidget(window.results)
    window.results.refresh()
    a, b = next(((runs[x], runs[y]) for x, y in PAIRS if x in runs and y in runs), (None, None))
    if a is not None:
        window.results.select_runs([a.id, b.id])
    shot("4-results")

    # Table 5.1's differences from unified LoRA, drawn with their intervals.
    table = window.results.show_study_table()
    table.resize(1300, 620)
    table.views.setCurrentWidget(table.forest)
    settle(app)
    table.grab().save(str(out / "8-table-differences.png"))
    print(f"saved {out / '8-table-differences.png'}", flush=True)
    table.views.setCurrentWidget(table.findings)
    settle(app)
    table.grab().save(str(out / "9-table-findings.png"))
    print(f"saved {out / '9-table-findings.png'}", flush=True)
    table.close()

    # A sweep's curve through the unified run, where the workspace has one (`shpers sweep --like RUN ...`).
    unified = runs.get("Unified LoRA")
    if unified is not None:
        curve = window.results.show_parameter_effect([unified.id])
        if curve is not None and curve.effect is not None:
            curve.resize(1000, 720)
            settle(app)
            curve.grab().save(str(out / "10-parameter-curve.png"))
            print(f"saved {out / '10-parameter-curve.png'}", flush=True)
        if curve is not None:
            curve.close()

    window.tabs.setCurrentWidget(window.grid)
    window.grid.refresh()
    if b is not None:
        # Where the second run loses most to the first: what a researcher reads to see why.
        window.grid.beside.setCurrentIndex(window.grid.beside.findData(a.id))
        window.grid.order.setCurrentIndex(window.grid.order.findData("lowest"))
        window.grid.show_replies(b.id, "persona_001")
    shot("5-grid")

    window.tabs.setCurrentWidget(window.chat)
    if a is not None:
        window.chat.set_selection("persona_001", b.id, a.id)
        window.chat.max_tokens.setValue(32)
        done = []
        window.chat.reply_done.connect(lambda: done.append(1))
        window.chat.load_test_turn()
        wait(app, lambda: bool(done), 240)
    shot("6-chat")

    # The example the input suggests, asked of the unified adapter beside the base model.
    base_run = runs.get("Base model (no adaptation)")
    if a is not None and base_run is not None:
        window.chat.set_selection("persona_000", a.id, base_run.id)
        window.chat.clear()
        for request in EXAMPLE_REQUESTS:
            done.clear()
            window.chat.input.setText(request)
            window.chat.send()
            wait(app, lambda: bool(done), 240)
        shot("7-chat-requests")
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
