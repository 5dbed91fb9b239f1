"""``shpers sweep [METHOD | --like RUN] PARAM VALUE...``: one run per value, then their rows of the results table
and the score against PARAM."""

from __future__ import annotations

import argparse

from shpers_core.cli.commands import command_help
from shpers_core.cli.executor_args import add_executor_args, ray_options
from shpers_core.cli.progress import ProgressPrinter
from shpers_core.cli.run_cmd import add_source_arg, like_spec, source_argument
from shpers_core.cli.stopping import stop_on_signals
from shpers_core.distributed.study import run_specs_on_ray
from shpers_core.errors import UserError
from shpers_core.evaluation.parameter_effect import effect_markdown, like_point, parameter_effect
from shpers_core.evaluation.table import study_rows, to_markdown
from shpers_core.events import JobCancelled, Reporter
from shpers_core.jobs.estimate import estimate_job, format_duration, total_seconds
from shpers_core.jobs.runner import load_dataset_for, run_job
from shpers_core.jobs.spec import DEVICE_HELP, DTYPE_HELP, DTYPES, flat_defaults
from shpers_core.jobs.sweep import sweep_parameter, sweep_specs
from shpers_core.methods.registry import METHODS
from shpers_core.models import DEFAULT_MODEL
from shpers_core.params import parse_overrides
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help=command_help("sweep"),
                       usage="%(prog)s METHOD PARAM VALUE [VALUE ...] [options]\n"
                             "       %(prog)s --like RUN PARAM VALUE [VALUE ...] [options]",
                       description="Run METHOD once per VALUE of PARAM (every other parameter as --param sets it) "
                                   "and print the runs' rows of the results table, then the score against PARAM with "
                                   "each value paired with the default's (as `shpers runs effect`). With --like RUN, "
                                   "every run starts from RUN's settings instead of the defaults. The Launch "
                                   "tab's sweep builds the same jobs. On Ray the runs go out together.",
                       epilog="examples:\n  shpers sweep unified_lora train.learning_rate 1e-4 5e-4 1e-3 --executor ray\n"
                              "  shpers sweep --like RUN lora.rank 4 16   (RUN's settings, two ranks)\n"
                              "  shpers sweep unified_lora lora.rank 4 8 16 --seeds 0 1 2   (nine runs, three points)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    # METHOD is optional with --like, so the positionals are read by hand (argparse cannot drop a leading one).
    p.add_argument("words", nargs="+", metavar="[METHOD] PARAM VALUE",
                   help="the method (see `shpers methods`; left out with --like), the parameter to vary, e.g. "
                        "train.learning_rate (see `shpers methods METHOD`), and its values, one run each")
    p.add_argument("--like", metavar="RUN", help="start every run from a stored run's settings (method, parameters, "
                   "base model, personas, dataset, device and dtype); the other options change only what they name")
    p.add_argument("--personas", nargs="+", default=[], metavar="ID", help="persona ids (default: all)")
    p.add_argument("--model", default=None, help="base model name, local folder or hub id")
    p.add_argument("--dataset", default="", help="dataset file or folder (default: the workspace's)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="set another parameter for every run (repeatable)")
    p.add_argument("--name", default="", help="runs are named 'NAME PARAM=VALUE' (default NAME: the method, or "
                                              "the --like run's name)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="N",
                   help="training seeds: every value runs once per seed, one pass over the values after another "
                        "(runs named '... seed=N'); the table and the curve pool each value's seeds persona by "
                        "persona (default: the training seed of --param, the --like run or Appendix A)")
    add_source_arg(p)
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--dtype", default=None, choices=DTYPES, help=DTYPE_HELP)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_executor_args(p)
    p.set_defaults(func=sweep)


def _sweep_from(args) -> tuple[str, str, list]:
    """The method, the parameter and the jobs the command line asks for."""
    words = list(args.words)
    if args.like:
        method = words.pop(0) if words[0] in METHODS else None
        record, base = like_spec(args, method, "shpers sweep", "sweep around it")
        if len(words) < 2:
            raise UserError("shpers sweep --like RUN: give the parameter to vary and at least one value")
        specs = sweep_specs(base.method, words[0], words[1:], base.form_values(), name=args.name or record.label,
                            base_model=base.base_model, personas=base.personas, dataset_path=base.dataset_path,
                            device=base.device, dtype=base.dtype, seeds=args.seeds, source_run=base.source_run)
        return base.method, words[0], specs
    if len(words) < 3:
        raise UserError("shpers sweep: give a method, the parameter to vary and at least one value "
                        "(or --like RUN, the parameter and its values)")
    method, parameter, values = words[0], words[1], words[2:]
    specs = sweep_specs(method, parameter, values, parse_overrides(args.param), name=args.name,
                        base_model=args.model or DEFAULT_MODEL, personas=args.personas, dataset_path=args.dataset,
                        device=args.device, dtype=args.dtype, seeds=args.seeds,
                        source_run=source_argument(args))
    return method, parameter, specs


def sweep(args) -> int:
    options = ray_options(args)  # --ray-address without --executor ray is refused before any work
    method, parameter, specs = _sweep_from(args)
    ws = Workspace.open(args.workspace)
    reporter = Reporter(ProgressPrinter(quiet=args.quiet))
    try:
        # Ctrl+C and `shpers runs cancel`: the run(s) in flight stop with a checkpoint, the rest do not start.
        with stop_on_signals(reporter):
            if options is None:
                dataset = load_dataset_for(specs[0], ws)  # read and validated once for every run
                with RunStore(ws.db_path) as store:
                    total = total_seconds([estimate_job(spec, dataset, store) for spec in specs])
                reporter.log(f"{len(specs)} run{'s' if len(specs) != 1 else ''}"
                             + ("" if total is None else f", about {format_duration(total)}"))
                run_ids = []
                for i, spec in enumerate(specs):
                    if reporter.should_stop():
                        raise JobCancelled()
                    reporter.progress("sweep", i, len(specs))
                    reporter.log(f"[{i + 1}/{len(specs)}] {spec.name}")
                    run_ids.append(run_job(spec, ws, reporter, dataset=dataset))
                reporter.progress("sweep", len(specs), len(specs))
            else:
                run_ids = run_specs_on_ray(specs, ws, reporter, options=options, label="sweep")
    except JobCancelled:
        return 130
    with RunStore(ws.db_path) as store:
        rows = study_rows(store, run_ids, pool_seeds=bool(args.seeds and len(args.seeds) > 1))
        qualified = sweep_parameter(method, parameter)[0]
        curve = run_ids + like_point(store, args.like, qualified, run_ids)
        effect = parameter_effect(store, curve, qualified, defaults=flat_defaults(method)) if len(curve) > 1 else None
    if not args.quiet:
        print(f"\nSweep of {parameter} for {method}\n")
        print(to_markdown(rows))
        if effect is not None:
            print(effect_markdown(effect))
    print("\n".join(run_ids))
    return 0
