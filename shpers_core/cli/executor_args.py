"""``--executor local|ray`` and the Ray options, shared by ``shpers run``, ``study`` and ``bench``."""

from __future__ import annotations

import functools

from shpers_core.distributed.options import RayOptions
from shpers_core.errors import UserError


def add_executor_args(p) -> None:
    g = p.add_argument_group("where jobs run")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: on this machine (default); ray: on a Ray cluster")
    g.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="head of the Ray cluster (`ray start --head` prints it); default: start a local Ray instance")
    g.add_argument("--shared-folder", default=None, metavar="PATH",
                   help="a folder every Ray node mounts at PATH: checkpoints and finished adapters go through it "
                        "instead of Ray's object store (for large models); default: the object store")
    g.add_argument("--gpus", type=float, default=None,
                   help="GPUs per job on Ray (default: 1 for training jobs where the cluster has GPUs, else 0)")
    g.add_argument("--cpus", type=float, default=1.0, help="CPUs per job on Ray (default 1)")
    g.add_argument("--memory-gb", type=float, default=0.0, help="memory per job on Ray, in GiB (default: not declared)")
    g.add_argument("--retries", type=int, default=2,
                   help="times a job whose Ray worker was lost starts again from its last checkpoint (default 2)")


def ray_options(args):
    """The :class:`RayOptions` of ``args``; None for ``--executor local``."""
    if args.executor == "local":
        for name in ("ray_address", "shared_folder"):
            if getattr(args, name, None):
                raise UserError(f"--{name.replace('_', '-')} needs --executor ray")
        return None

    for name in ("gpus", "cpus", "memory_gb", "retries"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise UserError(f"--{name.replace('_', '-')} must not be negative (got {value:g})")
    return RayOptions(address=args.ray_address, gpus=args.gpus, cpus=args.cpus, memory_gb=args.memory_gb,
                      max_retries=args.retries, shared_folder=args.shared_folder)


def job_runner(args):
    """A callable with :func:`run_job`'s signature that runs where ``args`` says."""
    # lazy: the engine takes seconds to import, and `shpers runs list` (which shares this module
    # with `runs resume`) should not wait for it.
    from shpers_core.distributed.ray_executor import run_on_ray
    from shpers_core.jobs.runner import run_job

    options = ray_options(args)
    if options is None:
        return run_job

    @functools.wraps(run_on_ray)
    def run(spec, workspace, reporter, **kwargs):
        kwargs.pop("store", None)
        kwargs.pop("base", None)
        return run_on_ray(spec, workspace, reporter, options=options, **kwargs)

    return run
