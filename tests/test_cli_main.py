"""The ``shpers`` command as a shell user meets it."""

from __future__ import annotations

import subprocess
import sys


def test_a_closed_pipe_ends_the_command_quietly():
    # `shpers methods soft_prompt | head -1`: the reader leaves after one line.
    proc = subprocess.Popen([sys.executable, "-m", "shpers_core.cli.main", "methods", "soft_prompt"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    first = proc.stdout.read(10)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert first.startswith(b"soft_promp")
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    assert proc.returncode == 0


_PROBE = """
import sys
from shpers_core.cli.main import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
print("ENGINE", sorted(m for m in ("torch", "transformers", "peft", "sklearn") if m in sys.modules), "RC", rc)
"""


def _probe(*argv: str) -> tuple[str, str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=120)
    return proc.stdout, proc.stderr


def test_commands_that_need_no_model_do_not_wait_for_the_engine(tmp_path):
    # The engine takes seconds to import: `shpers --help` and `shpers runs list` must not pay for it.
    out, _ = _probe("--help")
    assert "ENGINE [] RC 0" in out
    for command in ("data", "bench", "run", "methods", "runs", "study", "sweep", "workspace"):
        assert command in out
    assert "list, inspect, compare" in out and "train and evaluate one method" in out
    out, err = _probe("--workspace", str(tmp_path / "ws"), "runs", "list")
    assert "ENGINE [] RC 0" in out, err
    out, err = _probe("--workspace", str(tmp_path / "ws"), "runs", "export", "--help")
    assert "ENGINE [] RC 0" in out and "merged" in out, err


def test_the_command_given_still_gets_its_whole_parser(tmp_path):
    out, err = _probe("--workspace", str(tmp_path / "ws"), "run", "--help")
    assert "RC 0" in out and "unified_lora" in out and "--personas" in out
    out, err = _probe("nonsense")
    assert "RC 2" in out and "invalid choice: 'nonsense'" in err
    out, err = _probe("-v", "runs", "nonsense")
    assert "RC 2" in out and "invalid choice: 'nonsense'" in err and "list" in err
