"""The smoke study runs end to end on an imported EdgeWisePersona sample and an imported chat-layout file."""

from __future__ import annotations

from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest

from shpers_core.cli.main import main
from shpers_core.data import load_dataset
from shpers_core.jobs.study import STUDY_STEPS
from shpers_core.store import RunStore

DATA = Path(__file__).parent / "data"


@pytest.mark.slow
@pytest.mark.parametrize("source, flags", [
    (DATA / "edgewisepersona", []),
    (DATA / "chat_messages.jsonl", ["--persona-field", "user_id", "--character-field", "profile"]),
], ids=["edgewisepersona", "chat"])
def test_smoke_study_on_an_imported_dataset(tmp_path, shpers_cache, source, flags):
    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "data", "import", str(source), *flags]) == 0
    dataset = load_dataset(ws / "dataset" / "dialogues.jsonl")
    buf = StringIO()
    with redirect_stdout(buf):
        rc = main(["--workspace", str(ws), "study", "--preset", "smoke", "--model", "tiny-qwen2", "-q"])
    assert rc == 0
    for label, _, _ in STUDY_STEPS:
        assert f"| {label} |" in buf.getvalue()
    # Under the table, its differences from unified LoRA drawn as intervals on one axis.
    forest = buf.getvalue().split("Difference from unified LoRA over all turns", 1)[1]
    assert sum("├" in line or "●" in line for line in forest.splitlines()) == len(STUDY_STEPS) - 1
    # Then the study's four questions answered from it.
    findings = forest.split("What the table answers", 1)[1]
    assert all(f"- RQ{n}, " in findings for n in (1, 2, 3, 4))
    with RunStore(ws / "shpers.sqlite") as store:
        runs = store.list_runs()
        assert len(runs) == len(STUDY_STEPS) and all(r.status == "finished" for r in runs)
        assert {r.dataset_hash for r in runs} == {dataset.content_hash()}
        # Every persona of the imported set got scored by every run.
        for run in runs:
            assert set(store.persona_scores(run.id)) == set(dataset.persona_ids)
