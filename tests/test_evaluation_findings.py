"""RQ1-RQ4 answered in words from Table 5.1: what each answer says follows the table's verdicts."""

from __future__ import annotations

from stored_runs import add_scored_run, spread

from shpers_core.cli.main import main
from shpers_core.evaluation.findings import findings, findings_text
from shpers_core.evaluation.table import study_rows
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

N = 12


def _shift(scores: dict[str, float], by: float) -> dict[str, float]:
    """``by`` higher, each persona by a slightly different amount (see :func:`_alike`)."""
    return {p: v + by + 0.0001 * i for i, (p, v) in enumerate(scores.items())}


def _alike(scores: dict[str, float]) -> dict[str, float]:
    """The same scores within a hair each way: no difference a test could show. (Unequal hairs: tied
    differences send scipy's Wilcoxon to a permutation test, seconds slower.)"""
    return {p: v + 0.001 * (i + 1) * (-1) ** i for i, (p, v) in enumerate(scores.items())}


def _answers(store) -> dict[str, str]:
    return {f.label: f.answer for group in findings(study_rows(store)) for f in group.answers}


def test_each_question_is_answered_from_its_rows_verdicts(tmp_path):
    base = spread(N, 0.6, 1)
    with RunStore(Workspace.open(tmp_path).db_path) as store:
        add_scored_run(store, "unified_lora", base, name="unified")
        add_scored_run(store, "per_persona_lora", _shift(base, -0.15), name="per persona")
        add_scored_run(store, "cluster_lora", _shift(base, -0.10), name="clusters")
        add_scored_run(store, "weighted_merge", _shift(base, -0.12), name="merge")
        add_scored_run(store, "sparse_moe", _alike(base), name="moe")
        add_scored_run(store, "static_prefix", _alike(base), name="text prefix", dependent_shift=0.1)
        add_scored_run(store, "system_prompt", _shift(base, 0.2), name="prompt")  # no question's row
        answers = _answers(store)
        text = findings_text(study_rows(store))
    assert answers["RQ1"].startswith("No: every row scored below unified LoRA.")
    assert "Every interval ends below zero" in answers["RQ1"]
    assert answers["RQ3"].startswith("No row beat unified LoRA: 1 of 2 rows scored below it")
    # RQ3 pairs the merges with the per-persona adapters they merge: merge +3 points, moe +15 above them.
    assert answers["RQ3"].endswith("Merging did help against per-persona LoRA (paired over personas, Holm over 2 "
                                   "merge rows): moe, merge scored above it.")
    assert "merge vs per persona: +3.00 points [" in text
    assert answers["RQ4"].startswith("Not shown: no row differs from unified LoRA at this size.")
    assert "On persona-dependent turns, text prefix scored above it." in answers["RQ4"]
    # RQ2 also pairs the clusters with per-persona LoRA: 5 points above it on every persona.
    assert "clusters vs per persona: +5.00 points [" in text
    assert "better; means 50." in text and ", per-persona 45." in text and ", unified 60." in text
    assert ("Pooling did help against per-persona LoRA (paired over personas, Holm over 1 cluster row): clusters "
            "scored above it.") in answers["RQ2"]
    assert "prompt" not in text  # beyond the study's questions
    assert text.rstrip().endswith(f"Above unified LoRA on {N} personas: text prefix (persona-dependent turns).")


def test_clusters_no_better_than_per_persona_are_said_so_and_not_tested_without_it(tmp_path):
    base = spread(N, 0.6, 5)
    per_persona = _shift(base, -0.1)
    with RunStore(Workspace.open(tmp_path).db_path) as store:
        add_scored_run(store, "unified_lora", base, name="unified")
        add_scored_run(store, "cluster_lora", _alike(per_persona), name="k=2")
        add_scored_run(store, "cluster_lora", _shift(per_persona, -0.05), name="k=4")
        add_scored_run(store, "cluster_lora", per_persona, name="k=8")
        alone = _answers(store)["RQ2"]
        add_scored_run(store, "per_persona_lora", per_persona, name="per persona")
        rq2 = _answers(store)["RQ2"]
        text = findings_text(study_rows(store))
    assert "per-persona" not in alone  # nothing to pair with
    assert "k=8 vs per persona: the same score on each of the 12 personas" in text
    assert rq2.endswith("Against per-persona LoRA (paired over personas, Holm over 3 cluster rows), k=4 scored "
                        "below it: pooling did not help.")
    assert "k=2 vs per persona: -0.05 points [" in text
    assert "p 1.000, no difference shown; means 49.37" in text


def test_a_method_above_unified_is_a_yes_and_a_missing_question_is_left_out(tmp_path):
    base = spread(N, 0.5, 2)
    with RunStore(Workspace.open(tmp_path).db_path) as store:
        add_scored_run(store, "unified_lora", base, name="unified")
        add_scored_run(store, "soft_prompt", _shift(base, 0.08), name="learned prefix")
        answers = _answers(store)
        text = findings_text(study_rows(store))
    assert answers == {"RQ4": "Yes: learned prefix scored above unified LoRA."}
    assert "RQ1" not in text and "No personalisation method beat" not in text


def test_each_model_and_dataset_is_answered_against_its_own_unified_run(tmp_path):
    with RunStore(Workspace.open(tmp_path).db_path) as store:
        for model, shift in (("tiny-qwen2", -0.1), ("smollm2", 0.1)):
            base = spread(N, 0.5, 3)
            add_scored_run(store, "unified_lora", base, base_model=model, name=f"{model} unified")
            add_scored_run(store, "per_persona_lora", _shift(base, shift), base_model=model, name=f"{model} pp")
        text = findings_text(study_rows(store))
    tiny, smol = text.split("tiny-qwen2 on dataset")[1], text.split("smollm2 on dataset")[1]
    assert "RQ1" in tiny and "No: every row scored below" in tiny.split("smollm2")[0]
    assert "Yes: smollm2 pp scored above unified LoRA." in smol


def test_without_a_unified_run_nothing_is_claimed_and_the_cli_prints_it(tmp_path, capsys):
    ws = Workspace.open(tmp_path)
    with RunStore(ws.db_path) as store:
        add_scored_run(store, "per_persona_lora", spread(N, 0.5, 4))
    assert main(["--workspace", str(ws.root), "runs", "export", "--format", "findings"]) == 0
    assert "No study question can be answered" in capsys.readouterr().out


def test_a_p_just_below_the_threshold_is_not_printed_as_the_threshold():
    from shpers_core.evaluation.table import format_p, verdict_of

    assert (format_p(0.0498), verdict_of(0.1, 0.0498)) == ("0.0498", "better")
    assert (format_p(0.0502), verdict_of(0.1, 0.0502)) == ("0.0502", "no difference shown")
    assert (format_p(0.0449), format_p(0.2), format_p(0.0004)) == ("0.045", "0.200", "< 0.001")


def test_merges_above_and_below_per_persona_lora_are_both_named(tmp_path):
    base = spread(N, 0.6, 6)
    per_persona = _shift(base, -0.1)
    with RunStore(Workspace.open(tmp_path).db_path) as store:
        add_scored_run(store, "unified_lora", base, name="unified")
        add_scored_run(store, "per_persona_lora", per_persona, name="per persona")
        add_scored_run(store, "weighted_merge", _shift(per_persona, 0.03), name="factor average")
        add_scored_run(store, "weighted_merge", _shift(per_persona, -0.03), name="TIES")
        rq3 = _answers(store)["RQ3"]
    assert rq3.endswith("Merging did help against per-persona LoRA (paired over personas, Holm over 2 merge rows): "
                        "factor average scored above it; TIES scored below it.")
