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
