"""``shpers data``: generate, validate, stats; user mistakes are one line on stderr and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from shpers_core.cli.main import main
from shpers_core.models.tiny import SAMPLE_CORPUS

BAD = Path(__file__).parent / "bad_inputs"
SAMPLE = SAMPLE_CORPUS


def test_validate_ok(capsys):
    assert main(["data", "validate", str(SAMPLE)]) == 0
    assert capsys.readouterr().out.strip() == "ok: 12 personas, 360 dialogues"


@pytest.mark.parametrize("name", ["wrong_role.jsonl", "not_utf8.jsonl", "malformed_array.json"])
def test_validate_bad_file_is_one_line_and_exit_2(capsys, name):
    assert main(["data", "validate", str(BAD / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("shpers: error: ") and name in err


def test_generate_to_workspace_then_stats(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "data", "generate", "--personas", "3", "--dialogues", "4", "--seed", "2"]) == 0
    assert (ws / "dataset" / "dialogues.jsonl").is_file()
    assert main(["--workspace", str(ws), "data", "stats"]) == 0
    out = capsys.readouterr().out
    assert "personas" in out and "12" in out and "splits (train/val/test)" in out and "domain: " in out


def test_generate_bad_size_exits_2(tmp_path, capsys):
    assert main(["data", "generate", "--dialogues", "1", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "at least 3" in capsys.readouterr().err


@pytest.mark.parametrize("sub", ["generate", "validate", "stats"])
def test_every_subcommand_has_help(capsys, sub):
    with pytest.raises(SystemExit) as info:
        main(["data", sub, "--help"])
    assert info.value.code == 0
    assert "usage: shpers data " + sub in capsys.readouterr().out
