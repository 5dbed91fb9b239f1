"""The order an adapter sees its dialogues in: seeded, every example once per epoch, grouped by length."""

import random

from shpers_core.jobs.spec import JobSpec, build_spec
from shpers_core.training.batching import batches_for
from shpers_core.training.loss import padding_share


def _lengths(n, seed=1):
    rng = random.Random(seed)
    return [rng.randint(40, 400) for _ in range(n)]


def _padding(lengths, plan):
    padded = real = 0
    for batch in plan:
        p, r = padding_share([lengths[i] for i in batch])
        padded, real = padded + p, real + r
    return padded / (padded + real)


def test_grouped_batches_cover_each_example_once_per_epoch_with_the_same_step_count():
    lengths = _lengths(437)
    plain = batches_for(lengths, 4, 3, seed=0)
    grouped = batches_for(lengths, 4, 3, seed=0, group_by_length=True)
    assert len(grouped) == len(plain) == 3 * 110
    for epoch in range(3):
        rows = [i for b in grouped[epoch * 110:(epoch + 1) * 110] for i in b]
        assert sorted(rows) == list(range(437))
    assert sum(len(b) < 4 for b in grouped) == 3  # one short batch an epoch, as before


def test_grouping_cuts_padding_and_keeps_the_order_seeded():
    lengths = _lengths(400)
    grouped = batches_for(lengths, 4, 2, seed=5, group_by_length=True)
    assert _padding(lengths, grouped) < 0.05 < 0.25 < _padding(lengths, batches_for(lengths, 4, 2, seed=5))
    assert grouped == batches_for(lengths, 4, 2, seed=5, group_by_length=True)
    assert grouped != batches_for(lengths, 4, 2, seed=6, group_by_length=True)
    # The batches are not handed out longest first: a window's order is shuffled too.
    widths = [max(lengths[i] for i in b) for b in grouped[:100]]
    assert widths != sorted(widths, reverse=True) and widths != sorted(widths)


def test_a_run_recorded_before_grouping_resumes_with_its_own_batches():
    spec = build_spec("unified_lora", {}, personas=["p1"])
    assert spec.train.group_by_length  # new runs group
    stored = spec.to_dict()
    del stored["train"]["group_by_length"]
    assert JobSpec.from_dict(stored).train.group_by_length is False


def test_every_study_row_reads_back_from_the_store_as_the_same_spec():
    from shpers_core.jobs.study import study_specs

    for spec in study_specs("smoke", ["p1", "p2"], base_model="tiny-qwen2"):
        assert JobSpec.from_dict(spec.to_dict()) == spec, spec.name
