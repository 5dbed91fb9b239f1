"""Threads: all physical cores for a job alone, one for work that starts beside another computing process."""

import os
import subprocess
import sys

import torch

from shpers_core import threads


def test_a_job_alone_uses_every_physical_core_and_a_second_one_thread(shpers_cache):
    cores = threads.physical_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert os.environ.get("OMP_WAIT_POLICY") == "PASSIVE"
    with threads.computing() as n:
        assert n == cores == torch.get_num_threads()
        # Another process asks while this one is registered as computing.
        code = "from shpers_core import threads; print(threads.threads_now())"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert out.stdout.strip() == "1"
        with threads.computing() as inner:  # a source run inside a job keeps the job's threads
            assert inner == cores
    assert threads.other_busy_processes() == 0
    assert threads.threads_now() == cores


def test_chat_does_not_count_as_a_computing_process(shpers_cache):
    with threads.computing(register=False):
        assert not list((shpers_cache / "busy").iterdir())


SHARE = """
import os, subprocess, sys
{first}
from shpers_core import threads
job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
(threads._busy_dir() / str(job.pid)).touch()  # a training job computing beside this process
with threads.computing() as n:
    print("threads", n)
job.kill()
"""


def test_a_program_that_imported_torch_first_is_told_why_sharing_is_slow(shpers_cache):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    warned = []
    for first in ("import torch", "import shpers_core, torch"):
        out = subprocess.run([sys.executable, "-c", SHARE.format(first=first)], capture_output=True, text=True,
                             env=env, check=True)
        assert "threads 1" in out.stdout
        warned.append("torch was imported before shpers_core" in out.stderr)
    assert warned == [True, False]
