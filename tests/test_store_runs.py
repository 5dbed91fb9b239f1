import math
import subprocess
import sys
import threading

import pytest

from shpers_core.store import Curve, RunStore, StoreError
from shpers_core.store.host import host_name


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "shpers.sqlite") as s:
        yield s


def new_run(store, **kw):
    return store.create_run("lora", {"method": {"rank": 8}, "train": {"lr": 1e-3}}, "tiny-qwen2", "hash1",
                            ["p1", "p2"], **kw)


class WithToDict:
    def to_dict(self):
        return {"rank": 4}


def test_lifecycle_round_trip(store):
    rid = new_run(store, seed=3, name="first", dataset_path="/data/d.jsonl")
    run = store.get_run(rid)
    assert (run.status, run.method, run.seed, run.name, run.personas) == ("queued", "lora", 3, "first", ["p1", "p2"])
    assert run.params == {"method": {"rank": 8}, "train": {"lr": 1e-3}}
    assert run.code_version.startswith("shpers ") and run.created_at.endswith("+00:00")
    # The libraries that change a run's numbers, with their versions, for whoever reproduces it.
    import torch

    assert f"torch {torch.__version__}" in run.code_version and ", transformers " in run.code_version
    store.start_run(rid)
    run = store.get_run(rid)
    assert (run.status, run.host) == ("running", host_name()) and run.pid and run.heartbeat_at
    store.finish_run(rid, {"loss": 0.25}, duration_s=12.5, trainable_params=4096)
    run = store.get_run(rid)
    assert (run.status, run.duration_s, run.trainable_params) == ("finished", 12.5, 4096) and run.finished_at
    assert store.metrics(rid) == {"all": {"loss": 0.25}}


def test_fail_cancel_status_and_update(store):
    a, b = new_run(store), new_run(store)
    store.start_run(a)
    store.fail_run(a, "CUDA out of memory")
    run = store.get_run(a)
    assert (run.status, run.error) == ("failed", "CUDA out of memory") and run.duration_s is not None
    store.cancel_run(b)
    assert store.get_run(b).status == "cancelled" and store.get_run(b).finished_at
    store.update_run(b, name="renamed", notes="bad lr", params=WithToDict())
    assert (store.get_run(b).name, store.get_run(b).notes, store.get_run(b).params) == ("renamed", "bad lr", {"rank": 4})
    store.set_status(b, "queued")
    assert store.get_run(b).status == "queued"
    with pytest.raises(ValueError, match="id"):
        store.update_run(b, id="x")
    with pytest.raises(ValueError, match="status"):
        store.set_status(b, "done")


def test_ids_sort_by_creation_and_prefixes_resolve(store):
    ids = [new_run(store) for _ in range(3)]
    assert all(i.startswith("r") and len(i) == 21 for i in ids)
    assert [r.id for r in store.list_runs()] == ids[::-1]
    for i in ids:
        if sum(j.startswith(i[:-1]) for j in ids) == 1:
            assert store.get_run(i[:-1]).id == i
    with pytest.raises(StoreError, match=r"no run 'nope' in .*shpers.sqlite"):
        store.get_run("nope")
    with pytest.raises(StoreError, match="ambiguous"):
        store.get_run("r")


def test_list_runs_filters(store):
    a = new_run(store)
    b = store.create_run("prompt", {}, "tiny-qwen2", "h", [], parent_run_id=a[:12])
    store.start_run(b)
    assert store.get_run(b).parent_run_id == a
    assert [r.id for r in store.list_runs(status="running")] == [b]
    assert [r.id for r in store.list_runs(method="lora")] == [a]
    assert len(store.list_runs(status=["running", "queued"])) == 2
    with pytest.raises(StoreError, match="unknown run status 'done'"):
        store.list_runs(status="done")


def test_curves(store):
    rid = new_run(store)
    store.add_curve_points(rid, [("train", "train", s, 1.0 / (s + 1)) for s in range(5)])
    store.add_curve_points(rid, [("val", "val", 4, float("nan")), ("p1", "train", 0, 2.0), ("p1", "val", 0, 3.0)])
    # A resumed run logs step 4 again: the new point replaces the old one.
    store.add_curve_points(rid, [("train", "train", 4, 9.0)])
    curves = store.curves(rid)
    assert set(curves) == {"train", "val", "p1/train", "p1/val"}
    assert curves["train"].steps == [0, 1, 2, 3, 4] and curves["train"].values[-1] == 9.0
    assert curves["val"].kind == "val" and math.isnan(curves["val"].values[0])
    val = store.curves(rid, kind="val")
    assert set(val) == {"val", "p1"} and val["p1"] == Curve("val", [(0, 3.0)])
    with pytest.raises(ValueError, match="kind"):
        store.add_curve_points(rid, [("train", "test", 0, 1.0)])


def test_scores_predictions_artefacts_logs(store):
    rid = new_run(store)
    store.set_metrics(rid, {"device_precision": 0.5}, subset="persona_dependent")
    store.set_metrics(rid, {"device_precision": 0.75}, subset="persona_dependent")
    assert store.metrics(rid, subset="persona_dependent") == {"device_precision": 0.75}
    store.add_persona_scores(rid, [("p1", "embedding_similarity", "all", 0.8),
                                   {"persona_id": "p2", "metric": "embedding_similarity", "value": 0.6}])
    assert store.persona_scores(rid) == {"p1": 0.8, "p2": 0.6}
    assert store.persona_scores(rid, subset="other") == {}
    store.add_predictions(rid, [{"persona_id": "p1", "dialogue_id": "d1", "turn": 1,
                                 "history": [{"role": "user", "text": "lights?"}], "prediction": "on",
                                 "reference": "off", "persona_dependent": True, "parameter_f1": 0.0}])
    (pred,) = store.predictions(rid, persona_id="p1")
    assert (pred.prediction, pred.persona_dependent, pred.scores) == ("on", True, {"parameter_f1": 0.0})
    assert pred.history == [{"role": "user", "text": "lights?"}] and store.predictions(rid, "p2") == []
    store.add_artefact(rid, "adapter", "/ws/runs/x/p1", persona_id="p1")
    store.add_artefact(rid, "adapter", "/ws/runs/x/p1", persona_id="p1")
    store.add_artefact(rid, "checkpoint", "/ws/runs/x/step-10")
    assert [a.persona_id for a in store.artefacts(rid, kind="adapter")] == ["p1"]
    assert len(store.artefacts(rid)) == 2
    store.log(rid, "loading model")
    store.log(rid, "oops", level="error")
    lines = store.logs(rid)
    assert [(line.level, line.message) for line in lines] == [("info", "loading model"), ("error", "oops")]
    assert [line.message for line in store.logs(rid, after_id=lines[0].id)] == ["oops"]
    with pytest.raises(ValueError, match="subset"):
        store.set_metrics(rid, {"x": 1.0}, subset="persona-dependent")


def test_delete_run_removes_every_row(store):
    keep, gone = new_run(store), new_run(store)
    for rid in (keep, gone):
        store.add_curve_points(rid, [("train", "train", 0, 1.0)])
        store.set_metrics(rid, {"loss": 1.0})
        store.add_artefact(rid, "adapter", f"/ws/runs/{rid}")
        store.log(rid, "hi")
    store.start_run(gone)
    with pytest.raises(StoreError, match="is running"):
        store.delete_run(gone)
    store.cancel_run(gone)
    assert [str(p) for p in store.delete_run(gone)] == [f"/ws/runs/{gone}"]
    for table in ("runs", "curves", "metrics", "artefacts", "events_log"):
        assert store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 1
    assert store.get_run(keep).id == keep


def test_writes_to_unknown_run_fail_clearly(store):
    with pytest.raises(StoreError, match="no run 'r123'"):
        store.add_curve_points("r123", [("train", "train", 0, 1.0)])


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_recover_interrupted_on_open(tmp_path):
    path = tmp_path / "shpers.sqlite"
    with RunStore(path) as store:
        dead, stale, alive = new_run(store), new_run(store), new_run(store)
        for rid in (dead, stale, alive):
            store.start_run(rid)
        store.update_run(dead, pid=dead_pid())
        store.update_run(stale, host="other-machine", heartbeat_at="2020-01-01T00:00:00.000+00:00")
    with RunStore(path) as store:
        assert {r.id for r in store.list_runs(status="interrupted")} == {dead, stale}
        assert "ended without finishing" in store.get_run(dead).error
        assert "no sign of life from other-machine" in store.get_run(stale).error
        assert store.get_run(alive).status == "running"
        # A run caught silent is alive after all: its next heartbeat revives it.
        store.heartbeat(stale)
        assert (store.get_run(stale).status, store.get_run(stale).error) == ("running", None)


def test_store_refuses_use_from_another_thread(store):
    caught = []
    thread = threading.Thread(target=lambda: caught.append(_try(store.list_runs)))
    thread.start()
    thread.join()
    assert "thread" in str(caught[0])


def _try(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the test inspects whatever was raised
        return exc
    return None


def test_run_names_are_unique_and_runs_can_be_renamed_and_tagged(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        a = store.create_run("lora", {}, "m", "h", ["p1"], name="sweep")
        b = store.create_run("lora", {}, "m", "h", ["p1"], name="sweep")
        c = store.create_run("lora", {}, "m", "h", ["p1"], name="sweep")
        assert [store.get_run(r).name for r in (a, b, c)] == ["sweep", "sweep (2)", "sweep (3)"]
        assert store.unique_name("sweep") == "sweep (4)" and store.unique_name("other") == "other"
        with pytest.raises(StoreError, match=r"already named 'sweep'; try 'sweep \(2\)'"):
            store.rename_run(b, "sweep")
        with pytest.raises(StoreError, match="empty"):
            store.rename_run(b, "  ")
        store.rename_run(b, "lr 1e-3")
        store.rename_run(b, "lr 1e-3")  # its own name is not taken by another run
        store.update_run(b, notes="diverged after epoch 2", tags=["keep", " lr ", "keep", ""])
        run = store.get_run(b)
        assert (run.name, run.notes, run.tags) == ("lr 1e-3", "diverged after epoch 2", ["keep", "lr"])
        assert store.get_run(a).tags == []
