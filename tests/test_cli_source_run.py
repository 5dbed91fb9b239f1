"""A merge or prefix builds on the run a user names, and a run repeated ``--like`` it on what it built on."""

from __future__ import annotations

import pytest
from cli_workspace import make_workspace, shpers

from shpers_core.evaluation.parameter_effect import varied_settings
from shpers_core.store import RunStore

TRAIN = ["--model", "tiny-qwen2", "-q", "--param", "train.num_epochs=1", "--param", "eval.max_test_dialogues=1",
         "--param", "eval.max_new_tokens=4", "--param", "eval.max_train_dialogues=4", "--param", "train.warmup_ratio=0"]
MERGE = ["--param", "method_params.k=2", "--param", "eval.max_test_dialogues=1", "--param", "eval.max_new_tokens=4"]


def _last(out: str) -> str:
    return out.strip().splitlines()[-1]


def _parent(root, run_id: str) -> str:
    with RunStore(root / "shpers.sqlite") as store:
        return store.get_run(run_id).parent_run_id


@pytest.fixture
def two_per_persona_runs(shpers_cache, tmp_path):
    """A workspace with per-persona LoRA at two learning rates: (root, older run, newer run)."""
    root = make_workspace(tmp_path, personas=3)
    runs = []
    for lr in ("3e-4", "1e-3"):
        rc, out, err = shpers(root, "run", "per_persona_lora", *TRAIN, "--param", f"train.learning_rate={lr}",
                              "--name", f"per persona {lr}")
        assert rc == 0, err
        runs.append(_last(out))
    return root, *runs


def test_a_merge_builds_on_the_run_named_and_its_reruns_on_the_same(two_per_persona_runs):
    root, older, newer = two_per_persona_runs
    rc, out, err = shpers(root, "run", "weighted_merge", "--model", "tiny-qwen2", "-q", *MERGE,
                          "--source", older[:-2])
    assert rc == 0, err
    merge = _last(out)
    assert _parent(root, merge) == older  # not the newest per-persona run
    rc, out, _ = shpers(root, "runs", "show", merge)
    assert f"built on run {older}  per persona 3e-4 (named by the job)" in out
    assert f'"source_run": "{older}"' in out  # the full id, though a start of it was typed

    # Run again with one change: on the adapters the first merge merged, not the newest.
    rc, out, err = shpers(root, "run", "--like", merge, "-q", "--param", "method_params.merge_mode=exact")
    assert rc == 0, err
    assert _parent(root, _last(out)) == older
    rc, out, err = shpers(root, "sweep", "--like", merge, "method_params.density", "0.3", "0.7", "-q")
    assert rc == 0, err
    assert [_parent(root, r) for r in out.split()[-2:]] == [older, older]
    # `--source newest` takes the newest again.
    rc, out, err = shpers(root, "run", "--like", merge, "-q", "--source", "newest")
    assert rc == 0, err
    on_newest = _last(out)
    assert _parent(root, on_newest) == newer
    rc, out, _ = shpers(root, "runs", "show", on_newest)
    assert f"built on run {newer}  per persona 1e-3 (the newest when it ran)" in out
    # Merges of other adapters are not repeats of each other on a curve.
    with RunStore(root / "shpers.sqlite") as store:
        assert varied_settings([store.get_run(merge), store.get_run(on_newest)]) == ["source_run"]
    rc, out, _ = shpers(root, "runs", "show", merge)
    assert "on a curve against method_params.density" in out and "against source_run" not in out


def test_a_source_the_job_cannot_build_on_is_refused_before_anything_is_recorded(two_per_persona_runs):
    root, older, _ = two_per_persona_runs
    rc, out, err = shpers(root, "run", "unified_lora", *TRAIN)
    assert rc == 0, err
    unified = _last(out)
    cases = [
        (["weighted_merge", *MERGE, "--source", unified], f"builds on a per_persona_lora run; run {unified} is unified_lora"),
        (["unified_lora", "--source", older], "unified_lora builds on no other run"),
        (["weighted_merge", *MERGE, "--source", "r-no-such-run"], "no run 'r-no-such-run'"),
    ]
    with RunStore(root / "shpers.sqlite") as store:
        before = len(store.list_runs())
    for argv, message in cases:
        rc, _, err = shpers(root, "run", *argv, "--model", "tiny-qwen2", "-q")
        assert rc != 0 and message in err and "Traceback" not in err, (argv, err)
    with RunStore(root / "shpers.sqlite") as store:
        assert len(store.list_runs()) == before
