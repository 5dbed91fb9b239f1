"""The study presets as jobs: what ``quick`` runs, and that its rows say where epochs and data were cut."""

from shpers_core.jobs.spec import defaults_for
from shpers_core.jobs.study import PRESETS, STUDY_STEPS, study_specs


def test_quick_runs_every_row_on_20_personas_with_3_test_dialogues_and_names_its_cuts():
    preset = PRESETS["quick"]
    assert preset.personas >= 20
    ids = [f"p{i:03d}" for i in range(preset.personas)]
    specs = study_specs(preset, ids)
    assert len(specs) == len(STUDY_STEPS)
    cut = 0
    for (label, method, _), spec in zip(STUDY_STEPS, specs):
        train, ev = spec.train, spec.eval
        assert spec.personas == ids and spec.base_model == preset.base_model
        assert ev.max_test_dialogues >= 3 and ev.max_train_dialogues >= 5
        if "train" in defaults_for(method) and train.num_epochs < defaults_for(method)["train"]["num_epochs"]:
            full = defaults_for(method)["train"]["num_epochs"]
            assert spec.name == (f"{label} ({train.num_epochs} of {full} epochs, "
                                 f"{ev.max_train_dialogues} training dialogues a persona)")
            cut += 1
        elif "train" in defaults_for(method):
            assert spec.name == f"{label} ({ev.max_train_dialogues} training dialogues a persona)"
        else:
            assert spec.name == label
    assert cut >= 4


def test_quick_trains_unified_and_per_persona_lora_for_appendix_a_epochs():
    # RQ1 compares these two rows: cutting either one's epochs would bias the comparison, and one
    # epoch left the unified adapter echoing requests back in chat.
    specs = {s.method: s for s in study_specs(PRESETS["quick"], [f"p{i:03d}" for i in range(20)])}
    for method in ("unified_lora", "per_persona_lora"):
        assert specs[method].train.num_epochs == defaults_for(method)["train"]["num_epochs"] == 3


def test_smoke_and_seed_rows_keep_their_plain_names():
    for name in ("smoke", "seed"):
        specs = study_specs(PRESETS[name], ["a", "b", "c", "d", "e"])
        assert [s.name for s in specs] == [label for label, _, _ in STUDY_STEPS]
    seed = study_specs(PRESETS["seed"], ["a"])
    assert all(s.train.num_epochs == defaults_for(s.method).get("train", {}).get("num_epochs", 0) or
               "train" not in defaults_for(s.method) for s in seed)


def test_several_seeds_repeat_every_row_that_depends_on_the_seed_in_passes():
    import pytest

    from shpers_core.errors import UserError
    from shpers_core.jobs.study import study_passes

    ids = [f"p{i:03d}" for i in range(4)]
    first, second = study_passes("smoke", ids, seeds=[0, 1])
    assert [s.name.removesuffix(" seed=0") for s in first] == [label for label, _m, _o in STUDY_STEPS]
    once = {"base_model", "system_prompt", "retrieval"}  # no training, nothing trained under them
    assert {s.method for s in first} - {s.method for s in second} == once
    for spec in second:
        assert spec.name.endswith(" seed=1")
        if "train" in defaults_for(spec.method):
            assert spec.train.seed == 1
    # Merges and prefixes come after what they build on, within the pass: the newest such run is the pass's own.
    methods = [s.method for s in second]
    assert methods.index("per_persona_lora") < methods.index("weighted_merge")
    assert methods.index("unified_lora") < methods.index("static_prefix")
    assert study_specs("smoke", ids, seeds=[0, 1]) == first + second
    (alone,) = study_passes("smoke", ids, seeds=[3])
    assert [s.name for s in alone] == [s.name for s in study_specs("smoke", ids)] and alone[1].train.seed == 3
    with pytest.raises(UserError, match="1 repeats"):
        study_passes("smoke", ids, seeds=[1, 2, 1])
