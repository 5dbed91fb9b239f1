"""``shpers runs list|show|compare|export|resume|delete|cancel|rename|note`` (``replies`` and ``effect``: their own
modules)."""

from __future__ import annotations

import json
import os
import signal
import time

from shpers_core.cli.commands import command_help
from shpers_core.cli.effect_cmd import add_parser as add_effect_parser
from shpers_core.cli.executor_args import add_executor_args, job_runner
from shpers_core.cli.progress import ProgressPrinter
from shpers_core.cli.replies_cmd import add_parser as add_replies_parser
from shpers_core.cli.stopping import stop_on_signals
from shpers_core.cli.stored_runs import one_line, open_store, print_or_write, strict_json
from shpers_core.errors import UserError
from shpers_core.evaluation.findings import findings_text
from shpers_core.evaluation.forest import DIFFERENCE_FIELDS, forest_text
from shpers_core.evaluation.likeness import unlike_settings
from shpers_core.evaluation.metrics import METRIC_NAMES
from shpers_core.evaluation.parameter_effect import sibling_groups
from shpers_core.evaluation.report import report_markdown
from shpers_core.evaluation.stats import paired_comparison
from shpers_core.evaluation.table import study_rows, to_csv, to_markdown
from shpers_core.events import JobCancelled, Reporter
from shpers_core.jobs.delete import delete_run as delete
from shpers_core.jobs.delete import (
    discard_progress,
    human_size,
    plan_delete,
    resolve_run_id,
)
from shpers_core.store import StoreError
from shpers_core.store.host import host_name, pid_alive
from shpers_core.workspace import Workspace

EXPORT_FORMATS = ("merged", "gguf", "peft")  # shpers_core.export.FORMATS, without importing torch for --help


def add_parser(sub) -> None:
    p = sub.add_parser("runs", help=command_help("runs"))
    rs = p.add_subparsers(dest="runs_command", metavar="ACTION")
    rs.required = True

    ls = rs.add_parser("list", help="stored runs, newest first")
    ls.add_argument("--status", help="only runs with this status")
    ls.add_argument("--method", help="only runs of this method")
    ls.add_argument("--tag", help="only runs with this tag")
    ls.add_argument("--json", action="store_true", help="print the runs as a JSON array, for scripts")
    ls.set_defaults(func=list_runs)

    show = rs.add_parser("show", help="a run's parameters, metrics and per-persona scores")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="print the run as one JSON object, for scripts")
    show.set_defaults(func=show_run)

    add_replies_parser(rs)

    cmp_ = rs.add_parser("compare", help="paired comparison of two runs on their shared personas")
    cmp_.add_argument("run_a")
    cmp_.add_argument("run_b")
    cmp_.add_argument("--metric", default="embedding_similarity", choices=METRIC_NAMES,
                      help="the per-persona score compared (default: embedding_similarity)")
    cmp_.add_argument("--subset", default="all", choices=("all", "persona_dependent", "other"),
                      help="which test turns: all, persona-dependent (★) or the others")
    cmp_.set_defaults(func=compare_runs)
    add_effect_parser(rs)

    exp = rs.add_parser(
        "export", help="the results table (Markdown, CSV, a text forest plot or the findings), or one persona's model "
                       "(merged, GGUF, PEFT)",
        usage="%(prog)s [RUN ...] [--format markdown|csv|forest|findings|report] [--subset ...] [--out FILE]\n"
              "       %(prog)s RUN --persona ID --to merged|gguf|peft DIR",
        description="Without --to: the results table of RUNs (default: all, newest first), its differences "
                    "from unified LoRA drawn as a text forest plot, or RQ1-RQ4 answered in words. With --to: one persona's answer in "
                    "RUN, as a merged Hugging Face model folder, a GGUF LoRA adapter with the base GGUF and an "
                    "Ollama Modelfile, or the PEFT folders, into the new or empty folder DIR (or --out).")
    exp.add_argument("run_ids", nargs="*", metavar="RUN", help="runs to include (default: all)")
    exp.add_argument("--format", choices=("markdown", "csv", "forest", "findings", "report"), default="markdown",
                     help="the table as Markdown or CSV, its differences from unified LoRA drawn as a text "
                          "forest plot (one interval per row), the study's questions RQ1-RQ4 answered from it, or "
                          "all of these in one Markdown report")
    exp.add_argument("--subset", choices=tuple(DIFFERENCE_FIELDS),
                     help="with --format forest: the turns whose differences are drawn (default: all)")
    exp.add_argument("--pool-seeds", action="store_true",
                     help="one row for finished runs that differ only in their training seed, each persona's "
                          "score averaged over the seeds")
    exp.add_argument("--out", help="write to this file (table) or folder (--to) instead of standard output")
    exp.add_argument("--persona", metavar="ID", help="with --to: the persona whose answer to export")
    # FORMAT and DIR ride on one option: argparse cannot take a positional after options once RUN ... was read.
    exp.add_argument("--to", nargs="+", metavar=("FORMAT", "DIR"),
                     help=f"export one persona's model as FORMAT ({', '.join(EXPORT_FORMATS)}) into DIR")
    exp.set_defaults(func=export_runs)

    res = rs.add_parser("resume", help="continue an interrupted or cancelled run from its last checkpoint",
                        description="Continue the run from its last checkpoint, here or (--executor ray) on a Ray "
                                    "cluster, wherever it ran before.")
    res.add_argument("run_id")
    res.set_defaults(func=resume_run)
    add_executor_args(res)

    res.add_argument("--restart", action="store_true",
                     help="discard its checkpoints and adapters and train it again from the beginning")

    rm = rs.add_parser("delete", help="delete a run: its rows and its folder (adapters, checkpoints)",
                       description="Delete a run's rows and its folder runs/RUN_ID, after one confirmation "
                                   "that names what goes, the disk it frees and the runs built on it.")
    rm.add_argument("run_id", help="run id, or an unambiguous prefix of at least 6 characters")
    rm.add_argument("-y", "--yes", action="store_true", help="delete without asking")
    rm.set_defaults(func=delete_run)

    cancel = rs.add_parser("cancel", help="stop a queued or running run (it saves a checkpoint and can be resumed)")
    cancel.add_argument("run_id")
    cancel.add_argument("--wait", type=float, default=30.0, metavar="S",
                        help="seconds to wait for a running job to stop (default 30)")
    cancel.set_defaults(func=cancel_run)

    rn = rs.add_parser("rename", help="give a run a new name (names are unique in a workspace)")
    rn.add_argument("run_id")
    rn.add_argument("name")
    rn.set_defaults(func=rename_run)

    note = rs.add_parser("note", help="set a run's notes and tags (what the Results tab filters by)")
    note.add_argument("run_id")
    note.add_argument("--notes", help="replace the run's notes with this text")
    note.add_argument("--tags", help="replace the run's tags, comma-separated (empty: none)")
    note.set_defaults(func=note_run)


def _run_json(store, run, full: bool) -> dict:
    record = {k: v for k, v in vars(run).items() if full or k != "params"}
    scored = run.status == "finished"  # a run whose evaluation did not finish has no scores to show
    record["metrics"] = {subset: store.metrics(run.id, subset=subset) if scored or subset == "info" else {}
                         for subset in ("all", "persona_dependent", "other", "info")}
    if full:
        record["persona_scores"] = store.persona_scores(run.id) if scored else {}
    return record


def list_runs(args) -> int:
    with open_store(args) as store:
        runs = store.list_runs(status=args.status, method=args.method)
        if getattr(args, "tag", None):
            runs = [r for r in runs if args.tag in r.tags]
        if args.json:
            print(strict_json([_run_json(store, r, full=False) for r in runs]))
            return 0
        if not runs:
            print("no runs yet")
            return 0
        print(f"{'run':24} {'status':11} {'method':18} {'personas':>8} {'emb. sim.':>9}  name")
        for run in runs:
            # Only a finished run's evaluation is complete; a run cut short shows no score.
            sim = store.metrics(run.id, subset="all").get("embedding_similarity") if run.status == "finished" else None
            sim_text = f"{sim * 100:.2f}" if sim is not None else "–"
            print(f"{run.id:24} {run.status:11} {run.method:18} {len(run.personas):>8} {sim_text:>9}  {one_line(run.name)}")
    return 0


def rename_run(args) -> int:
    with open_store(args) as store:
        rid = store.rename_run(args.run_id, args.name)  # StoreError (a UserError) for a taken or empty name
    print(f"renamed {rid} to {one_line(args.name.strip())}")
    return 0


def note_run(args) -> int:
    if args.notes is None and args.tags is None:
        raise UserError("runs note: give --notes TEXT, --tags A,B or both")
    fields = {}
    if args.notes is not None:
        fields["notes"] = args.notes
    if args.tags is not None:
        fields["tags"] = [t for t in args.tags.split(",") if t.strip()]
    with open_store(args) as store:
        store.update_run(args.run_id, **fields)
        run = store.get_run(args.run_id)
    print(f"{run.id}: tags {', '.join(run.tags) or '(none)'}" + (f"; notes {one_line(run.notes)}" if run.notes else ""))
    return 0


def show_run(args) -> int:
    with open_store(args) as store:
        run = store.get_run(args.run_id)
        if args.json:
            print(strict_json(_run_json(store, run, full=True)))
            return 0
        dtype = f"  in {run.params['dtype']}" if run.params.get("dtype") else ""
        print(f"run {run.id}  {one_line(run.name)}\nmethod {run.method}  base model {run.base_model}{dtype}  "
              f"status {run.status}")
        if run.code_version:
            print(f"made with {run.code_version}" + (f" on {run.host}" if run.host else ""))
        if run.parent_run_id:
            print(f"built on run {run.parent_run_id}" + _name_of(store, run.parent_run_id)
                  + (" (named by the job)" if run.params.get("source_run") else " (the newest when it ran)"))
        if run.error:
            print(f"error: {run.error}")
        if run.tags or run.notes:
            print(f"tags: {', '.join(run.tags) or '(none)'}" + (f"  notes: {one_line(run.notes)}" if run.notes else ""))
        print("parameters:\n" + json.dumps(run.params, indent=2, default=str))
        if run.status == "finished":
            _print_metrics({subset: store.metrics(run.id, subset=subset)
                            for subset in ("all", "persona_dependent", "other")})
        else:
            print(f"no metrics: the run is {run.status}, its evaluation did not finish")
        info = store.metrics(run.id, subset="info")
        if info:
            print("info: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(info.items())))
        scores = store.persona_scores(run.id) if run.status == "finished" else {}
        if scores:
            print("embedding similarity per persona:")
            for pid, value in sorted(scores.items()):
                print(f"  {pid}  {value * 100:.2f}")
        sweeps = sibling_groups(store, run.id) if run.status == "finished" else {}
        for key, ids in sweeps.items():
            print(f"on a curve against {key} with {len(ids) - 1} other run(s): "
                  f"shpers runs effect {run.id} --parameter {key}")
    return 0


def _name_of(store, run_id: str) -> str:
    try:
        return f"  {one_line(store.get_run(run_id).label)}"
    except StoreError:
        return "  (deleted since)"


def _print_metrics(by_subset: dict[str, dict[str, float]]) -> None:
    """Mean ± std across personas, in percent: one row per metric, one column per subset of turns."""
    if not by_subset.get("all"):
        return
    heads = {"all": "all turns", "persona_dependent": "persona-dependent", "other": "other turns"}
    print(f"{'metric (% mean ± std)':24}" + "".join(f"{heads[s]:>20}" for s in by_subset))
    for name in METRIC_NAMES:
        cells = []
        for values in by_subset.values():
            mean, std = values.get(name), values.get(f"{name}_std")
            cells.append("–" if mean is None else f"{mean * 100:.2f} ± {(std or 0) * 100:.2f}")
        print(f"{name:24}" + "".join(f"{c:>20}" for c in cells))


def compare_runs(args) -> int:
    with open_store(args) as store:
        a = store.persona_scores(args.run_a, metric=args.metric, subset=args.subset)
        b = store.persona_scores(args.run_b, metric=args.metric, subset=args.subset)
        run_a, run_b = store.get_run(args.run_a), store.get_run(args.run_b)
    if not a or not b:
        raise UserError(f"run {args.run_a if not a else args.run_b} has no {args.metric} scores (not finished?)")
    stats = paired_comparison(a, b)
    print(f"A = {run_a.id} ({run_a.name or run_a.method})\nB = {run_b.id} ({run_b.name or run_b.method})")
    print(f"{args.metric}, {args.subset.replace('_', '-')} turns")
    for line in unlike_settings(run_a, run_b):
        print(f"warning: unlike runs, {line}; the difference mixes that change with the method's")
    print(stats.summary())
    print(stats.verdict())
    print("largest differences (B − A):")
    for pid, diff in stats.largest_differences(5):
        print(f"  {pid}  {diff * 100:+.2f}")
    print(f"the turns behind them: shpers runs replies {run_b.id} --beside {run_a.id} --worst 10")
    return 0


def export_runs(args) -> int:
    if args.to or args.persona:
        return export_persona_model(args)
    if args.subset and args.format != "forest":
        raise UserError("--subset is for --format forest: the Markdown and CSV tables have every subset's columns")
    with open_store(args) as store:
        rows = study_rows(store, args.run_ids or None, pool_seeds=args.pool_seeds)
    if args.format == "forest":
        text = forest_text(rows, args.subset or "all")
    elif args.format == "findings":
        text = findings_text(rows)
    elif args.format == "report":
        text = report_markdown(rows)
    else:
        text = to_csv(rows) if args.format == "csv" else to_markdown(rows)
    print_or_write(text, args.out, f"{len(rows)} runs")
    return 0


def export_persona_model(args) -> int:
    usage = "shpers runs export RUN --persona ID --to FORMAT DIR"
    if not args.to or not args.persona:
        raise UserError(f"exporting a persona's model needs both --persona and --to: {usage}")
    fmt, *dirs = args.to
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    dirs += args.run_ids[1:] + ([args.out] if args.out else [])
    if len(args.run_ids) < 1 or len(dirs) != 1:
        raise UserError(f"give one run and one folder: {usage}")
    from shpers_core.export import export_persona  # lazy: the engine, imported only when a model is exported

    result = export_persona(Workspace.open(args.workspace), args.run_ids[0], args.persona, fmt, dirs[0])
    print(result.summary())
    return 0


def resume_run(args) -> int:
    from shpers_core.jobs.spec import JobSpec  # lazy: imports every method, only when a run resumes

    run_job = job_runner(args)  # --ray-address without --executor ray is refused before anything changes
    ws = Workspace.open(args.workspace)
    with open_store(args) as store:
        run = store.get_run(args.run_id)
    if run.status not in ("interrupted", "cancelled", "failed"):
        raise UserError(f"run {run.id} is {run.status}; only interrupted, cancelled or failed runs resume")
    if args.restart:
        discard_progress(ws, run.id)
    reporter = Reporter(ProgressPrinter())
    try:
        with stop_on_signals(reporter):  # Ctrl+C and `shpers runs cancel`, as `shpers run`
            run_job(JobSpec.from_dict(run.params), ws, reporter, run_id=run.id)
    except JobCancelled:
        return 130
    print(run.id)
    return 0


def _confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except (EOFError, OSError):
        return False
    return answer.strip().lower() in ("y", "yes")


def delete_run(args) -> int:
    ws = Workspace.open(args.workspace)
    with open_store(args) as store:
        run_id = resolve_run_id(store, args.run_id, confirmed=args.yes)
        plan = plan_delete(ws, store, run_id)
        if not args.yes:
            print(plan.describe())
            if not _confirm("Delete it?"):
                raise UserError(f"run {run_id} not deleted (answer y to delete, or pass --yes)")
        delete(ws, store, run_id)
    print(f"deleted {run_id} (freed {human_size(plan.size_bytes)})")
    return 0


def cancel_run(args) -> int:
    """Queued: cancelled at once. Running here: asked to stop (SIGTERM), which checkpoints and marks it cancelled."""
    with open_store(args) as store:
        run = store.get_run(args.run_id)
        if run.status == "queued":
            store.cancel_run(run.id)
            print(f"cancelled {run.id}")
            return 0
        if run.status != "running":
            raise UserError(f"run {run.id} is {run.status}; only queued or running runs can be cancelled")
        if run.host != host_name():
            raise UserError(f"run {run.id} runs on {run.host}; cancel it there")
        if not run.pid or pid_alive(run.pid) is False:
            store.cancel_run(run.id)
            print(f"cancelled {run.id} (its process was gone)")
            return 0
        os.kill(run.pid, signal.SIGTERM)
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            status = store.get_run(run.id).status
            if status != "running":
                print(f"{status} {run.id}")
                return 0
            time.sleep(0.2)
    raise UserError(f"run {run.id} was asked to stop but is still running after {args.wait:.0f} s")
