"""shpers engine: personalising small chat LMs (no Qt here)."""

import os as _os

# OpenMP threads that spin while idle collapse when a job, chat or a second job share the cores;
# sleeping ones cost little. Set before torch starts its thread pool (see ``threads.py``).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
