"""``shpers run --like RUN``: a stored run's settings again, changed only where the command says."""

from __future__ import annotations

from cli_workspace import make_workspace, shpers

from shpers_core.jobs.spec import JobSpec
from shpers_core.store import RunStore

FAST = ["--param", "train.num_epochs=1", "--param", "eval.max_test_dialogues=1", "--param", "eval.max_new_tokens=4",
        "--param", "eval.max_train_dialogues=4", "--param", "train.warmup_ratio=0"]


def _spec(root, run_id: str) -> JobSpec:
    with RunStore(root / "shpers.sqlite") as store:
        return JobSpec.from_dict(store.get_run(run_id).params)


def test_a_run_started_like_another_keeps_its_settings_but_what_is_named(tmp_path):
    root = make_workspace(tmp_path, personas=3)
    rc, out, err = shpers(root, "run", "unified_lora", "--model", "tiny-qwen2", "-q", "--name", "first",
                          "--personas", "persona_000", "persona_002", "--param", "lora.rank=4",
                          "--param", "train.learning_rate=3e-4", "--dtype", "float32", *FAST)
    assert rc == 0, err
    first = out.strip().splitlines()[-1]
    rc, out, err = shpers(root, "run", "--like", first, "-q", "--param", "train.learning_rate=1e-3")
    assert rc == 0, err
    again = out.strip().splitlines()[-1]
    a, b = _spec(root, first), _spec(root, again)
    assert b.train.learning_rate == 1e-3 and a.train.learning_rate == 3e-4
    assert b.replace(train=a.train, name=a.name) == a  # method, rank, model, personas, dtype: the first run's
    rc, out, _ = shpers(root, "runs", "show", again)
    assert rc == 0 and "base model tiny-qwen2  in float32  status finished" in out
    assert "made with shpers " in out and "; torch " in out
    with RunStore(root / "shpers.sqlite") as store:
        assert store.get_run(again).name == "first (2)"
        assert store.get_run(again).status == "finished"


def test_like_names_a_missing_run_or_a_different_method_in_one_line(tmp_path):
    root = make_workspace(tmp_path, personas=2)
    rc, _, err = shpers(root, "run", "--like", "r-no-such-run", "-q")
    assert rc != 0 and "r-no-such-run" in err and "Traceback" not in err
    rc, _, err = shpers(root, "run", "-q")
    assert rc != 0 and "name a method" in err
    rc, out, err = shpers(root, "run", "base_model", "--model", "tiny-qwen2", "-q", "--param", "eval.max_test_dialogues=1",
                          "--param", "eval.max_new_tokens=2")
    assert rc == 0, err
    rc, _, err = shpers(root, "run", "unified_lora", "--like", out.strip().splitlines()[-1], "-q")
    assert rc != 0 and "is base_model, not unified_lora" in err
    with RunStore(root / "shpers.sqlite") as store:
        assert len(store.list_runs()) == 1  # nothing recorded for the refused commands
