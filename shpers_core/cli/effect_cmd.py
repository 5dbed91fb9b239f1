"""``shpers runs effect RUN RUN ...``: a score against the one parameter the runs differ in (a sweep's curve).

The app's Results tab draws the same points (select the runs, right-click, "Plot against a parameter…").
"""

from __future__ import annotations

import argparse

from shpers_core.cli.stored_runs import open_store, print_or_write
from shpers_core.evaluation.metrics import METRIC_NAMES
from shpers_core.evaluation.parameter_effect import curve_runs, effect_csv, effect_markdown, parameter_effect
from shpers_core.evaluation.table import SUBSETS


def add_parser(runs_actions) -> None:
    p = runs_actions.add_parser(
        "effect", help="a score against the one parameter the runs differ in (a sweep's curve), with paired tests",
        description="One point per value of PARAMETER over RUNs of one method: the mean score over personas with "
                    "its 95 %% interval and the final validation loss; runs at the same value (other seeds) pool. "
                    "Each value is paired with the reference (the parameter's default where a run has it, else the "
                    "best mean) over the personas both scored: Wilcoxon, Holm over the other values, simultaneous "
                    "intervals, as Table 5.1 does.",
        epilog="examples:\n  shpers runs effect RUN   (RUN and its sweep's runs, whatever they are named)\n"
               "  shpers runs effect $(shpers sweep unified_lora train.learning_rate 1e-4 2e-4 5e-4 -q)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_ids", nargs="+", metavar="RUN",
                   help="two or more runs of one method, or one run: then it and the finished runs that differ "
                        "from it in one setting alone (its sweep)")
    p.add_argument("--parameter", metavar="NAME",
                   help="the parameter to plot against, e.g. train.learning_rate or rank (default: the one "
                        "setting the runs differ in, the seed aside)")
    p.add_argument("--metric", default="embedding_similarity", choices=METRIC_NAMES,
                   help="the per-persona score (default: embedding_similarity)")
    p.add_argument("--subset", default="all", choices=SUBSETS,
                   help="which test turns: all, persona-dependent (★) or the others")
    p.add_argument("--format", choices=("markdown", "csv"), default="markdown",
                   help="a Markdown table with a summary in words, or CSV with unformatted numbers")
    p.add_argument("--out", help="write to this file instead of standard output")
    p.set_defaults(func=show_effect)


def show_effect(args) -> int:
    # lazy: the methods' registry loads torch, and `shpers runs list` must not wait for it
    from shpers_core.jobs.spec import flat_defaults

    with open_store(args) as store:
        method = store.get_run(args.run_ids[0]).method
        parameter, run_ids = curve_runs(store, args.run_ids, args.parameter)
        effect = parameter_effect(store, run_ids, parameter, metric=args.metric, subset=args.subset,
                                  defaults=flat_defaults(method))
    text = effect_csv(effect) if args.format == "csv" else effect_markdown(effect)
    print_or_write(text, args.out, f"{len(effect.points)} values of {effect.parameter}")
    return 0
