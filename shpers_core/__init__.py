"""shpers engine: personalising small chat LMs (no Qt here)."""

import os as _os
import sys as _sys

# OpenMP threads that spin while idle collapse when a job, chat or a second job share the cores;
# sleeping ones cost little. Set before torch starts its thread pool (see ``threads.py``).
# torch reads it once, when it loads: a program that imported torch first keeps spinning threads.
SPINNING_THREADS = "torch" in _sys.modules and "OMP_WAIT_POLICY" not in _os.environ
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
