"""A job's cost before it runs: counted from the dataset, timed from speeds measured on this machine."""

from __future__ import annotations

import math

import pytest

from shpers_core.data import generate_dataset, split_dataset
from shpers_core.jobs.estimate import estimate_job, job_workload
from shpers_core.jobs.spec import build_spec
from shpers_core.store import RunStore


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(n_personas=4, dialogues_per_persona=10)


def test_counts_follow_the_split_and_the_training_settings(dataset, tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        splits = split_dataset(dataset, seed=0)
        ids = dataset.persona_ids[:3]
        n_train = [len(splits[p].train) for p in ids]
        spec = build_spec("unified_lora", {"train.num_epochs": 2, "train.batch_size": 4, "eval.max_test_dialogues": 1},
                          base_model="tiny-qwen2", personas=ids)
        e = estimate_job(spec, dataset, store)
        assert (e.personas, e.train_dialogues) == (3, sum(n_train))
        assert e.steps == math.ceil(sum(n_train) / 4) * 2
        assert e.test_turns == sum(len(splits[p].test[0].turns()) for p in ids)
        per = estimate_job(build_spec("per_persona_lora", {"train.num_epochs": 2, "train.batch_size": 4},
                                      base_model="tiny-qwen2", personas=ids), dataset, store)
        assert per.steps == sum(math.ceil(n / 4) for n in n_train) * 2
        prompts = estimate_job(build_spec("soft_prompt", {"train.num_epochs": 2, "train.batch_size": 4},
                                          base_model="tiny-qwen2", personas=ids), dataset, store)
        assert prompts.steps == per.steps > e.steps  # a prompt per persona: each persona's batches round up
        prompt = estimate_job(build_spec("system_prompt", base_model="tiny-qwen2", personas=ids), dataset, store)
        assert (prompt.steps, prompt.train_tokens, prompt.train_dialogues) == (0, 0, 0)
        assert e.seconds is None and "No time estimate" in e.summary()


def test_time_comes_from_the_newest_speed_measured_on_the_same_model(dataset, tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        for model, tokens in (("tiny-qwen2", 100.0), ("other", 1.0), ("tiny-qwen2", 50.0)):
            rid = store.create_run("unified_lora", {}, model, "h", ["p"])
            store.set_metrics(rid, {"train_tokens_per_s": tokens, "eval_turns_per_s": 2.0}, subset="info")
            store.finish_run(rid)
        newest = store.list_runs()[0].id
        e = estimate_job(build_spec("unified_lora", base_model="tiny-qwen2"), dataset, store)
        assert e.tokens_per_s == 50.0 and e.measured_in == newest
        assert e.seconds == pytest.approx(e.train_tokens / 50.0 + e.test_turns / 2.0)
        assert f"measured in run {newest}" in e.summary()


def test_an_estimate_names_the_run_that_timed_each_part_it_has(dataset, tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        ids = {}
        for method, info in (("unified_lora", {"train_tokens_per_s": 100.0, "eval_turns_per_s": 2.0}),
                             ("weighted_merge", {"eval_turns_per_s": 7.0})):  # newest last
            ids[method] = store.create_run(method, {}, "tiny-qwen2", "h", ["p"])
            store.set_metrics(ids[method], info, subset="info")
            store.finish_run(ids[method])
        merge = estimate_job(build_spec("weighted_merge", base_model="tiny-qwen2"), dataset, store)
        # A merge trains nothing: its time and the run named are the merge run's, not the training run's.
        assert merge.turns_per_s == 7.0 and f"measured in run {ids['weighted_merge']})" in merge.summary()
        cluster = estimate_job(build_spec("cluster_lora", base_model="tiny-qwen2"), dataset, store)
        assert cluster.turns_per_s == 7.0  # the newest evaluation speed, where the method has no run of its own
        assert (f"measured in runs {ids['unified_lora']} (training) and {ids['weighted_merge']} (evaluation)"
                in cluster.summary())


def test_a_job_that_names_its_dtype_is_timed_only_by_runs_in_that_dtype(dataset, tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        for dtype, tokens in (("bfloat16", 300.0), ("float32", 100.0)):
            rid = store.create_run("unified_lora", {"dtype": dtype}, "tiny-qwen2", "h", ["p"])
            store.set_metrics(rid, {"train_tokens_per_s": tokens, "eval_turns_per_s": 2.0}, subset="info")
            store.finish_run(rid)
        speed = {dtype: estimate_job(build_spec("unified_lora", base_model="tiny-qwen2", dtype=dtype), dataset,
                                     store) for dtype in (None, "bfloat16", "float16")}
    assert speed[None].tokens_per_s == 100.0  # automatic: the newest run, whatever it held
    assert speed["bfloat16"].tokens_per_s == 300.0
    assert speed["float16"].seconds is None
    assert "no finished run of this base model in float16 has measured" in speed["float16"].summary()


def test_a_finished_run_teaches_the_estimate_its_models_tokens_per_character(tmp_path):
    """The estimate of a job that ran counts the tokens it trained on, chat template and all, not text / 4."""
    from shpers_core.data import write_jsonl
    from shpers_core.events import CollectingReporter
    from shpers_core.jobs.runner import run_job
    from shpers_core.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    data = generate_dataset(n_personas=2, dialogues_per_persona=10)
    write_jsonl(data, ws.dataset_path)
    spec = build_spec("unified_lora", {"train.num_epochs": 2, "train.batch_size": 4, "eval.max_new_tokens": 2,
                                       "eval.max_test_dialogues": 1}, base_model="tiny-qwen2")
    with RunStore(ws.db_path) as store:
        before = estimate_job(spec, data, store)
    run_id = run_job(spec, ws, CollectingReporter())
    with RunStore(ws.db_path) as store:
        info = store.metrics(run_id, subset="info")
        after = estimate_job(spec, data, store)
        # Another job on the same model: its characters, the run's tokens per character.
        other = build_spec("unified_lora", {"train.num_epochs": 1}, base_model="tiny-qwen2",
                           personas=data.persona_ids[:1])
        one = estimate_job(other, data, store)
    assert before.seconds is None
    assert after.train_tokens == info["train_tokens"] != before.train_tokens
    # Plus what the run spent before evaluation besides training: sanity check, validation, saving.
    assert 0 < info["other_seconds"] < info["train_tokens"] / info["train_tokens_per_s"] * 10
    assert after.seconds == pytest.approx(info["train_tokens"] / info["train_tokens_per_s"]
                                          + after.test_turns / info["eval_turns_per_s"] + info["other_seconds"])
    work = job_workload(other, data)
    assert one.train_tokens == round(work.train_chars * info["train_tokens"] / info["train_chars"])


def test_a_method_is_timed_by_its_own_runs_first(dataset, tmp_path):
    """Retrieval's long prompts evaluate several times slower than the base model's: its own run times it."""
    with RunStore(tmp_path / "s.sqlite") as store:
        for method, turns in (("retrieval", 1.0), ("base_model", 5.0)):
            rid = store.create_run(method, {}, "tiny-qwen2", "h", ["p"])
            store.set_metrics(rid, {"eval_turns_per_s": turns}, subset="info")
            store.finish_run(rid)
        speed = {m: estimate_job(build_spec(m, base_model="tiny-qwen2"), dataset, store).turns_per_s
                 for m in ("retrieval", "base_model", "system_prompt")}
    assert speed == {"retrieval": 1.0, "base_model": 5.0, "system_prompt": 5.0}  # no own run: the newest


def test_time_besides_training_comes_from_a_run_of_the_same_method_and_settings(dataset, tmp_path):
    """A TIES merge spends half a minute merging where a factor average takes under a second."""
    from shpers_core.jobs.spec import build_spec as spec_of

    def merge(mode):
        return spec_of("weighted_merge", {"method_params.merge_mode": mode}, base_model="tiny-qwen2")

    with RunStore(tmp_path / "s.sqlite") as store:
        for mode, other in (("ties", 30.0), ("factor_average", 0.5)):
            rid = store.create_run("weighted_merge", merge(mode).to_dict(), "tiny-qwen2", "h", ["p"])
            store.set_metrics(rid, {"eval_turns_per_s": 2.0, "other_seconds": other}, subset="info")
            store.finish_run(rid)
        est = {mode: estimate_job(merge(mode), dataset, store) for mode in ("ties", "factor_average", "exact")}
    assert est["ties"].seconds == pytest.approx(est["ties"].test_turns / 2.0 + 30.0)
    assert est["factor_average"].other_seconds == 0.5
    assert est["exact"].other_seconds == 0.5  # no run in its mode: the method's newest


@pytest.mark.parametrize("method", ["unified_lora", "per_persona_lora"])
def test_a_stopped_run_has_left_only_the_training_its_checkpoints_have_not_done(tmp_path, method):
    from shpers_core.data import write_jsonl
    from shpers_core.events import CollectingReporter, JobCancelled
    from shpers_core.jobs.estimate import left_to_run
    from shpers_core.jobs.runner import run_job
    from shpers_core.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    data = generate_dataset(n_personas=2, dialogues_per_persona=10)
    write_jsonl(data, ws.dataset_path)
    steps = []
    stopper = CollectingReporter(should_stop=lambda: len(steps) >= 2)
    stopper.add_sink(lambda e: steps.append(e) if e.kind == "step" else None)
    spec = build_spec(method, {"train.num_epochs": 3, "train.batch_size": 2, "eval.max_new_tokens": 4},
                      base_model="tiny-qwen2")
    with pytest.raises(JobCancelled):
        run_job(spec, ws, stopper)
    with RunStore(ws.db_path) as store:
        (run,) = store.list_runs()
        whole = estimate_job(spec, data, store)
    left, done = left_to_run(whole, ws.run_dir(run.id))
    # Unified: its one adapter's two steps. Per-persona: the batched trainer steps both adapters together,
    # and the stop came after the first step's events: one step each.
    assert done == 2 and left.steps == whole.steps - done
    assert left.train_tokens == round(whole.train_tokens * (1 - done / whole.steps)) < whole.train_tokens
    assert (left.test_turns, left.personas) == (whole.test_turns, whole.personas)  # evaluation runs in full
    # Resumed, it trains only what was left: its tokens would teach later estimates too few per character.
    resumed = run_job(spec, ws, CollectingReporter(), run_id=run.id)
    with RunStore(ws.db_path) as store:
        info = store.metrics(resumed, subset="info")
    assert info["train_tokens"] > 0 and "train_chars" not in info
    # A run with no checkpoint (never trained, or discarded) has all of it left.
    again, none = left_to_run(whole, tmp_path / "nowhere")
    assert (again, none) == (whole, 0)
