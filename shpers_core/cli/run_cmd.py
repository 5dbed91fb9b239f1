"""``shpers run METHOD`` and ``shpers methods``."""

from __future__ import annotations

import argparse

from shpers_core.cli.commands import command_help
from shpers_core.cli.executor_args import add_executor_args, job_runner
from shpers_core.cli.progress import ProgressPrinter
from shpers_core.cli.stopping import stop_on_signals
from shpers_core.cli.stored_runs import open_store
from shpers_core.errors import UserError
from shpers_core.events import JobCancelled, Reporter
from shpers_core.jobs.sources import built_like
from shpers_core.jobs.spec import (
    DEVICE_HELP,
    DTYPE_HELP,
    DTYPES,
    JobSpec,
    build_spec,
    defaults_for,
    parameter_groups,
    spec_like,
)
from shpers_core.methods.registry import METHODS, get_method
from shpers_core.models import DEFAULT_MODEL
from shpers_core.params import parse_overrides
from shpers_core.store.records import RunRecord
from shpers_core.workspace import Workspace


def add_parser(sub) -> None:
    lines = "\n".join(f"  {name:18} {spec.summary}" for name, spec in METHODS.items())
    p = sub.add_parser("run", help=command_help("run"), formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=f"Run one method and store the run.\n\nmethods:\n{lines}\n\n"
                                   "See `shpers methods METHOD` for a method's parameters.")
    p.add_argument("method", nargs="?", help="method name (see `shpers methods`); optional with --like")
    p.add_argument("--like", metavar="RUN", help="start from a stored run's settings (method, parameters, base model, "
                   "personas, dataset, device and dtype); the other options change only what they name")
    p.add_argument("--personas", nargs="+", default=[], metavar="ID", help="persona ids (default: all)")
    p.add_argument("--model", default=None, help="base model name, local folder or hub id")
    p.add_argument("--dataset", default="", help="dataset file or folder (default: the workspace's)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="set a parameter, e.g. learning_rate=1e-4 or train.num_epochs=5 (repeatable)")
    p.add_argument("--name", default="", help="a label for the run")
    add_source_arg(p)
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--dtype", default=None, choices=DTYPES, help=DTYPE_HELP)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_executor_args(p)
    p.set_defaults(func=run)

    m = sub.add_parser("methods", help=command_help("methods"))
    m.add_argument("method", nargs="?", help="method name")
    m.set_defaults(func=methods)


def run(args) -> int:
    spec = _spec_from(args)
    run_job = job_runner(args)
    reporter = Reporter(ProgressPrinter(quiet=args.quiet))
    try:
        with stop_on_signals(reporter):  # Ctrl+C and `shpers runs cancel`, as the app's cancel
            run_id = run_job(spec, Workspace.open(args.workspace), reporter)
    except JobCancelled:
        return 130
    print(run_id)
    return 0


def _spec_from(args) -> JobSpec:
    if not args.like:
        if not args.method:
            raise UserError("shpers run: name a method (see `shpers methods`) or a run to start from with --like RUN")
        return build_spec(args.method, parse_overrides(args.param), base_model=args.model or DEFAULT_MODEL,
                          personas=args.personas, dataset_path=args.dataset, name=args.name, device=args.device,
                          dtype=args.dtype, source_run=source_argument(args))
    return like_spec(args, args.method, "shpers run", "run it again", name=args.name)[1]


def like_spec(args, method: str | None, command: str, purpose: str, **fields) -> tuple[RunRecord, JobSpec]:
    """``--like RUN``: the run's record and its job, changed only where ``--param``, ``--model``, ``--personas``,
    ``--dataset``, ``--device``, ``--dtype`` and ``fields`` say. A ``method`` other than the run's is refused."""
    with open_store(args) as store:
        record = store.get_run(args.like)
    if method and method != record.method:
        raise UserError(f"{command}: run {record.id} is {record.method}, not {method}; leave the method out "
                        f"to {purpose}")
    spec = spec_like(record.params, parse_overrides(args.param), base_model=args.model, personas=args.personas,
                     dataset_path=args.dataset, device=args.device, dtype=args.dtype, **fields)
    if args.source is not None:
        spec = spec.replace(source_run=source_argument(args))
    elif not (args.model or args.dataset):  # on another model or data, RUN's source would not fit
        spec = built_like(spec, record.parent_run_id)
    return record, spec


SOURCE_NEWEST = "newest"


def add_source_arg(p) -> None:
    """``--source RUN``: the run a merge or prefix job builds on."""
    p.add_argument("--source", default=None, metavar="RUN",
                   help="the run a merge or prefix builds on: a per-persona LoRA run (merges) or a unified LoRA run "
                        "(prefixes, retrieval); default: the newest finished one on the same model, data and personas "
                        f"(or one trained first), or with --like, the one RUN built on; '{SOURCE_NEWEST}' takes the "
                        "newest with --like too")


def source_argument(args) -> str:
    """The run ``--source`` names; empty for the newest."""
    return "" if args.source in (None, SOURCE_NEWEST) else args.source


def methods(args) -> int:
    if not args.method:
        for name, spec in METHODS.items():
            print(f"{name:18} {spec.summary}")
        return 0
    spec = get_method(args.method)
    print(f"{spec.name}: {spec.title}\n{spec.summary}\n")
    defaults = defaults_for(spec.name)
    for group, cls in parameter_groups(spec.name).items():
        specs = cls.specs()
        if not specs:
            continue
        print(f"[{group}] {cls.title}")
        for s in specs:
            extra = f" (one of: {', '.join(map(str, s.choices))})" if s.choices else ""
            print(f"  {s.name} = {defaults[group][s.name]!r}\n      {s.help}{extra}")
    return 0
