"""``shpers study --preset smoke|quick|seed``: every method, then the table from the store."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from shpers_core.cli.commands import command_help
from shpers_core.cli.executor_args import add_executor_args, ray_options
from shpers_core.cli.progress import ProgressPrinter
from shpers_core.cli.stopping import stop_on_signals
from shpers_core.cli.stored_runs import check_output_file, write_text_file
from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.distributed.study import run_study_on_ray
from shpers_core.evaluation.findings import findings_text
from shpers_core.evaluation.forest import forest_text
from shpers_core.evaluation.report import report_markdown
from shpers_core.evaluation.table import study_rows, to_csv, to_markdown
from shpers_core.events import JobCancelled, Reporter
from shpers_core.jobs.estimate import estimate_job, format_duration, left_to_run, total_seconds
from shpers_core.jobs.spec import DEVICE_HELP, DTYPE_HELP, DTYPES
from shpers_core.jobs.study import PRESETS, plan_study, run_study, study_jobs
from shpers_core.jobs.study_progress import FINISHED, NEW, RESUME
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace


def add_parser(sub) -> None:
    p = sub.add_parser("study", help=command_help("study"),
                       description="Presets: " + " ".join(f"{n}: {p.description}" for n, p in PRESETS.items()))
    p.add_argument("--preset", default="smoke", choices=list(PRESETS))
    p.add_argument("--model", default=None, help="base model (default: the preset's)")
    p.add_argument("--personas", nargs="+", default=None, metavar="ID", help="persona ids (default: the preset's)")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--dtype", default=None, choices=DTYPES, help=DTYPE_HELP)
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="N",
                   help="training seeds: with several, every row that depends on the seed runs once per seed "
                        "(a whole pass after another) and the table pools them (default: Appendix A's seed)")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows that finished before in this workspace with the same settings and data, and "
                        "continue interrupted or cancelled ones from their checkpoints (default: run every row anew)")
    p.add_argument("--plan", action="store_true",
                   help="print each row with what this workspace has of it (with --resume: kept, resumed or run) and "
                        "the time left, from speeds measured here; run nothing")
    p.add_argument("--markdown", help="also write the table as Markdown to this file")
    p.add_argument("--csv", help="also write the table as CSV to this file")
    p.add_argument("--report", help="also write the findings, the table and its forest plots as one Markdown file")
    p.add_argument("-q", "--quiet", action="store_true")
    add_executor_args(p)
    p.set_defaults(func=study)


def resume_command(args) -> str:
    """The ``shpers study`` command line that continues the study ``args`` describe."""
    words = ["shpers", "study", "--preset", args.preset]
    for flag, value in (("--model", args.model), ("--device", args.device), ("--dtype", args.dtype),
                        ("--ray-address", args.ray_address)):
        if value:
            words += [flag, value]
    for flag, values in (("--personas", args.personas), ("--seeds", args.seeds)):
        if values:
            words += [flag, *map(str, values)]
    if args.executor != "local":
        words += ["--executor", args.executor]
    return shlex.join([*words, "--resume"])


def print_plan(args, ws: Workspace) -> int:
    """``--plan``: every row, what will happen to it, and the estimated time of what runs."""
    dataset, specs = study_jobs(args.preset, ws, base_model=args.model, personas=args.personas, dtype=args.dtype,
                                device=args.device, seeds=args.seeds)
    rows = plan_study(specs, ws, dataset.content_hash(), Reporter(), resume=args.resume)
    what = {FINISHED: "kept", RESUME: "resume", NEW: "run"}
    estimates = []
    with RunStore(ws.db_path) as store:
        hardware = ", ".join(f"{what_} {value}" for what_, value in (("device", args.device), ("dtype", args.dtype))
                             if value) or "device and dtype automatic"
        print(f"Study '{args.preset}': {len(rows)} rows on {len(specs[0].personas)} personas, {specs[0].base_model} "
              f"({hardware})")
        for i, row in enumerate(rows, 1):
            if row.state == FINISHED:
                print(f"{i:3}  {what[row.state]:7} {row.spec.name}  (run {row.run_id})")
                continue
            estimate = estimate_job(row.spec, dataset, store)
            resumes = ""
            if row.state == RESUME:
                whole = estimate.steps
                estimate, done = left_to_run(estimate, ws.run_dir(row.run_id))
                resumes = (f", training resumes after step {done} of about {whole}" if done else
                           ", no checkpoint yet: training starts over")
            estimates.append(estimate)
            took = "no estimate" if estimate.seconds is None else f"about {format_duration(estimate.seconds)}"
            print(f"{i:3}  {what[row.state]:7} {row.spec.name}  ({took}{resumes})")
    total = total_seconds(estimates)
    if not estimates:
        print("Nothing to run.")
    elif total is None:
        unknown = sum(e.seconds is None for e in estimates)
        print(f"{len(estimates)} rows to run; no time estimate for {unknown} of them: no finished run of "
              f"{specs[0].base_model}{f' in {args.dtype}' if args.dtype else ''} has measured this machine's speed yet.")
    else:
        sources = sorted({run for e in estimates for run in e.speed_runs() if run})
        where = f"run {sources[0]}" if len(sources) == 1 else f"{len(sources)} of this workspace's runs"
        print(f"{len(estimates)} rows to run: about {format_duration(total)} (speeds measured in {where}).")
    return 0


def study(args) -> int:
    ws = Workspace.open(args.workspace)
    options = ray_options(args)
    outputs = {Path(path): make for path, make in ((args.markdown, to_markdown), (args.csv, to_csv),
                                                   (args.report, report_markdown)) if path}
    for path in outputs:
        check_output_file(path)  # refused now, not after an hour of study
    if not ws.dataset_path.exists():
        print(f"no dataset in {ws.root}: generating the default one", flush=True)
        write_jsonl(generate_dataset(), ws.dataset_path)
    reporter = Reporter(ProgressPrinter(quiet=args.quiet))
    if args.plan:
        return print_plan(args, ws)
    try:
        # Ctrl+C and `shpers runs cancel`: the runs in flight stop with a checkpoint, the rest do not start.
        with stop_on_signals(reporter):
            if options is None:
                run_ids = run_study(args.preset, ws, reporter, base_model=args.model, personas=args.personas,
                                    dtype=args.dtype, device=args.device, seeds=args.seeds, resume=args.resume)
            else:
                run_ids = run_study_on_ray(args.preset, ws, reporter, options=options, base_model=args.model,
                                           personas=args.personas, dtype=args.dtype, device=args.device,
                                           seeds=args.seeds, resume=args.resume)
    except (JobCancelled, KeyboardInterrupt):
        print(f"study stopped; `{resume_command(args)}` continues it in this workspace: finished rows are kept "
              "and the stopped one resumes from its checkpoint", file=sys.stderr)
        return 130
    with RunStore(ws.db_path) as store:
        rows = study_rows(store, run_ids, pool_seeds=bool(args.seeds and len(args.seeds) > 1))
    print(f"\nStudy '{args.preset}' — Table 5.1 regenerated from {ws.db_path}\n")
    print(to_markdown(rows))
    print(forest_text(rows))
    print(findings_text(rows))
    for path, make in outputs.items():
        write_text_file(path, make(rows))
        print(f"wrote {path}")
    return 0
