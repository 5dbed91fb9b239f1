"""Workspaces with a small generated dataset, and the CLI called in-process: shared by the CLI and Ray tests."""

from __future__ import annotations

from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

from shpers_core.cli.main import main


def make_workspace(root: Path, personas: int = 3) -> Path:
    from shpers_core.data import generate_dataset, write_jsonl
    from shpers_core.workspace import Workspace

    write_jsonl(generate_dataset(personas, 9, seed=1), Workspace.open(root).dataset_path)
    return root


def shpers(root: Path, *argv: str) -> tuple[int, str, str]:
    """``shpers --workspace ROOT ARGV...`` in this process: (exit code, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["--workspace", str(root), *argv])
    return rc, out.getvalue(), err.getvalue()
