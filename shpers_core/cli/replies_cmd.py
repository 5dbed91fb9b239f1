"""``shpers runs replies RUN``: a run's stored replies to its test turns, beside the references.

The app's Grid shows them when a cell is clicked; this is the same reading for a terminal. Each
test turn gives the user's message (``--history``: the whole conversation before it), the run's
reply with its score, a second run's reply to the same turn (``--beside``) and the reference.
``--worst N`` keeps the N turns where the run scored lowest, or lowest against the second run:
where to start reading why a method loses.
"""

from __future__ import annotations

from shpers_core.cli.stored_runs import one_line, open_store, strict_json
from shpers_core.errors import UserError
from shpers_core.evaluation.metrics import METRIC_NAMES
from shpers_core.evaluation.turn_replies import (
    SUBSETS,
    lowest_first,
    message_role,
    message_text,
    pair_replies,
    turn_score,
)
from shpers_core.jobs.provenance import score_sources
from shpers_core.workspace import Workspace


def add_parser(runs_actions) -> None:
    p = runs_actions.add_parser(
        "replies", help="a run's replies to the test turns beside the references (and a second run's)",
        description="Print the replies RUN's evaluation stored for each test turn, with the turn's score, the "
                    "reference reply and, with --beside, a second run's reply to the same turn. Turn numbers count "
                    "from 1, as the app shows them.")
    p.add_argument("run_id", metavar="RUN", help="a run's id or the start of it")
    p.add_argument("--persona", action="append", default=[], metavar="ID",
                   help="only this persona (repeat for more; default: every persona with stored replies)")
    p.add_argument("--beside", metavar="RUN", help="a second run whose reply to the same turn is shown as B")
    p.add_argument("--subset", default="all", choices=tuple(SUBSETS),
                   help="which test turns: all, persona-dependent (★) or the others")
    p.add_argument("--metric", default="embedding_similarity", choices=METRIC_NAMES,
                   help="the per-turn score shown and ranked by --worst (default: embedding_similarity)")
    p.add_argument("--worst", type=int, metavar="N",
                   help="only the N turns where RUN scored lowest (with --beside: lowest against B), lowest first")
    p.add_argument("--history", action="store_true",
                   help="show the whole conversation before each turn, not only the user's last message")
    p.add_argument("--json", action="store_true", help="print one JSON object with every turn, for scripts")
    p.set_defaults(func=show_replies)


def show_replies(args) -> int:
    if args.worst is not None and args.worst < 1:
        raise UserError(f"--worst must be at least 1, not {args.worst}")
    with open_store(args) as store:
        run = store.get_run(args.run_id)
        other = store.get_run(args.beside) if args.beside else None
        if other is not None and other.id == run.id:
            raise UserError(f"--beside names run {run.id} itself: give a different run to compare with")
        mine = store.predictions(run.id)
        theirs = store.predictions(other.id) if other is not None else []
    if not mine:
        why = "" if run.status == "finished" else f": it is {run.status} and its evaluation did not finish"
        raise UserError(f"run {run.id} stored no replies{why}")
    covered = sorted({p.persona_id for p in mine})
    unknown = [pid for pid in args.persona if pid not in covered]
    if unknown:
        raise UserError(f"run {run.id} has no replies for persona {unknown[0]!r}; it covers {', '.join(covered)}")
    wanted = set(args.persona or covered)
    rows = pair_replies([p for p in mine if p.persona_id in wanted], theirs, args.subset)
    total = len(rows)
    if args.worst is not None:
        rows = lowest_first(rows, args.metric, against_beside=other is not None)[:args.worst]
    ws = Workspace.open(args.workspace)
    sources = {"A": score_sources(ws, run.id), "B": score_sources(ws, other.id) if other is not None else {}}
    if args.json:
        print(strict_json(_as_json(run, other, rows, sources, args)))
        return 0
    _print_header(run, other, rows, total, args)
    if run.status != "finished":
        print(f"note: run {run.id} is {run.status}; only the turns its evaluation reached are stored")
    shown_persona = None
    for row in rows:
        if row.mine.persona_id != shown_persona:
            shown_persona = row.mine.persona_id
            answered = [f"{side}: {one_line(sources[side].get(shown_persona, '(no plan recorded)'))}"
                        for side in ("A", "B") if side == "A" or other is not None]
            print(f"\n== {one_line(shown_persona)} · {' · '.join(answered)}")
        _print_turn(row.mine, row.beside, other is not None, args)
    return 0


def _describe(run) -> str:
    name = f"{one_line(run.name)}  " if run.name else ""
    return f"{run.id}  {name}({run.method} on {run.base_model})"


def _print_header(run, other, rows, total: int, args) -> None:
    print(f"A  {_describe(run)}")
    if other is not None:
        print(f"B  {_describe(other)}")
    kind = "persona-dependent test turns" if args.subset == "persona_dependent" else (
        "other test turns" if args.subset == "other" else "test turns")
    personas = len({row.mine.persona_id for row in rows})
    if args.worst is None:
        what = f"{total} {kind} of {personas} persona(s)"
    else:
        what = f"the {len(rows)} of {total} {kind} where A scored lowest" + (" against B" if other is not None else "")
    print(f"{what}; scores are {args.metric}")


def _format_score(p, metric: str) -> str:
    value = turn_score(p, metric)
    return f"{value:6.3f}" if value is not None else "     –"


def _print_turn(mine, theirs, with_beside: bool, args) -> None:
    star = " · persona-dependent ★" if mine.persona_dependent else ""
    print(f"\n{one_line(mine.dialogue_id)} · turn {mine.turn + 1}{star}")
    history = mine.history if args.history else mine.history[-1:]
    for message in history:
        print(f"  {message_role(message):<10} {one_line(message_text(message))}")
    print(f"  A {_format_score(mine, args.metric)}   {one_line(mine.prediction)}")
    if with_beside:
        reply = one_line(theirs.prediction) if theirs is not None else "(no reply to this turn)"
        print(f"  B {_format_score(theirs, args.metric)}   {reply}")
    print(f"  {'reference':<10} {one_line(mine.reference)}")


def _as_json(run, other, rows, sources, args) -> dict:
    return {
        "run": run.id, "beside": other.id if other is not None else None, "subset": args.subset,
        "metric": args.metric, "worst": args.worst,
        "answered_by": {"A": sources["A"], **({"B": sources["B"]} if other is not None else {})},
        "turns": [_turn_json(row, with_beside=other is not None) for row in rows],
    }


def _turn_json(row, with_beside: bool) -> dict:
    p = row.mine
    out = {"persona": p.persona_id, "dialogue": p.dialogue_id, "turn": p.turn + 1,
           "persona_dependent": p.persona_dependent,
           "history": [{"role": message_role(m), "text": message_text(m)} for m in p.history],
           "reply": p.prediction, "scores": p.scores, "reference": p.reference}
    if with_beside:
        q = row.beside
        out["beside"] = None if q is None else {"reply": q.prediction, "scores": q.scores}
    return out

