"""``shpers chat [RUN]``: talk to a persona's assistant from a terminal, as the app's Chat tab does.

Interactive on a terminal (replies stream token by token; Ctrl+C stops a reply). Scriptable: the
messages given with ``-m``, or one per line on a piped stdin, are asked in turn in one conversation
and each reply is printed on its own line (``--json``: one object with every turn). ``--beside``
asks a second run the same conversation in the same mixed-adapter batch, as the Chat tab's Beside.
``--test-dialogue N`` replays one of the persona's test dialogues as evaluation asks it, each reply
beside the reference, as the Chat tab's "Load a test dialogue".
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from shpers_core.cli.commands import command_help
from shpers_core.cli.stored_runs import one_line
from shpers_core.data.schema import Message
from shpers_core.errors import UserError
from shpers_core.workspace import Workspace

HELP = "/quit or Ctrl+D ends the chat; /reset starts a new conversation; Ctrl+C stops a reply"
# What --beside takes for the bare base model instead of a run id.
BASE = "base"
LABELS = ("A", "B")


def add_parser(sub) -> None:
    p = sub.add_parser("chat", help=command_help("chat"),
                       description="Chat with a persona's assistant: the adapter, prompt or prefix a finished "
                                   "run made for that persona, or the bare base model without RUN. On a "
                                   f"terminal it asks for messages ({HELP}). With -m, or with messages piped "
                                   "one per line, it prints each reply on its own line.")
    p.add_argument("run", nargs="?", default=None, metavar="RUN",
                   help="a finished run's id or the start of it (default: the bare base model)")
    p.add_argument("--persona", default=None, metavar="ID",
                   help="the persona to talk to (default: the run's first persona)")
    p.add_argument("--model", default=None, help="base model name, local folder or hub id, without RUN only")
    p.add_argument("--beside", default=None, metavar="RUN",
                   help=f"a second finished run (or '{BASE}': the bare base model) answering the same conversation "
                        "for the same persona; replies are labelled A and B")
    p.add_argument("-m", "--message", action="append", default=[], metavar="TEXT",
                   help="a message to send; repeat for a conversation (then nothing is read from the terminal)")
    p.add_argument("--test-dialogue", type=int, nargs="?", const=1, default=None, metavar="N",
                   help="replay the persona's Nth test dialogue (default 1) as evaluation asks it: each turn after "
                        "the reference replies before it, each reply beside the reference")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N",
                   help="longest reply in tokens (default: 64, as evaluation)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: the persona, the run and every turn with its reply")
    p.set_defaults(func=chat)


def chat(args) -> int:
    if args.run is not None and args.model:
        raise UserError("--model is for chatting without a run: a run chats with the base model it was trained on")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, not {args.max_new_tokens}")
    # lazy: torch and the methods, only once the arguments are known to be good
    from shpers_core.jobs.chat import ChatSession

    if args.test_dialogue is not None and args.message:
        raise UserError("--test-dialogue replays a test dialogue's own messages: give it or -m, not both")
    scripted = bool(args.message) or args.json or args.test_dialogue is not None or not sys.stdin.isatty()
    if not scripted:
        print("Loading the model...", file=sys.stderr, flush=True)
    ws = Workspace.open(args.workspace)
    sessions = [ChatSession(ws, args.run, args.persona, base_model=args.model, max_new_tokens=args.max_new_tokens)]
    if args.beside is not None:
        first = sessions[0]
        beside = None if args.beside == BASE else args.beside
        sessions.append(ChatSession(ws, beside, first.persona_id, max_new_tokens=args.max_new_tokens,
                                    base_model=first.spec.base_model if beside is None else None))
    if not scripted:
        return _interactive(sessions)
    if args.test_dialogue is not None:
        return _replay_test_dialogue(sessions, args.test_dialogue, args.json)
    messages = args.message or [line.strip() for line in sys.stdin if line.strip()]
    turns = []
    histories: list[list[Message]] = [[] for _ in sessions]
    for number, text in enumerate(messages, 1):
        answers, _ = _ask(sessions, histories, text)
        turn = {"user": text, "assistant": answers[0][0], "truncated": answers[0][1]}
        if len(sessions) > 1:
            turn["beside"] = {"assistant": answers[1][0], "truncated": answers[1][1]}
        turns.append(turn)
        if args.json:
            continue
        for label, (reply, truncated) in zip(LABELS, answers):
            print(f"{label}: {reply}" if len(sessions) > 1 else reply, flush=True)
            if truncated:
                which = f"{label}'s reply" if len(sessions) > 1 else "reply"
                print(f"shpers: warning: {which} {number} was cut off at the {args.max_new_tokens}-token limit "
                      "(raise --max-new-tokens for longer replies)", file=sys.stderr)
    if args.json:
        print(json.dumps({**_json_head(sessions), "turns": turns}, ensure_ascii=False, indent=2))
    return 0


def describe(session) -> str:
    """One line naming who answers: the persona, and the run (name, method) or the bare base model."""
    if session.run_id is None:
        who = f"the base model {session.spec.base_model} (no run)"
    else:
        name = f'"{session.run_name}", ' if session.run_name else ""
        who = f"run {session.run_id} ({name}{session.spec.method})"
    return f"{session.persona_id} through {who}"


def _ask(sessions: list, histories: list[list[Message]], text: str,
         out=None) -> tuple[list[tuple[str, bool]], bool]:
    """Ask ``text`` after each session's history, in one batch, and add both to the histories.

    Returns each session's (reply, cut at the token limit) and whether Ctrl+C stopped the replies,
    which keeps what came so far. With ``out``, the first session's reply is written there as it grows.
    """
    answers, stopped = _stream_answers(sessions, [[*h, Message("user", text)] for h in histories], out)
    for history, (reply, _) in zip(histories, answers):
        history += [Message("user", text), Message("assistant", reply)]
    return answers, stopped


def _stream_answers(sessions: list, asked: list[list[Message]],
                    out=None) -> tuple[list[tuple[str, bool]], bool]:
    """Each session's answer to its own ``asked`` history, in one batch: (reply, cut at the token limit),
    and whether Ctrl+C stopped them. With ``out``, the first session's reply is written there as it grows."""
    from shpers_core.jobs.chat import stream_together  # lazy: torch

    parts: list[list[str]] = [[] for _ in sessions]
    truncated = [False] * len(sessions)
    stopped = False
    # Ctrl+C sets a flag read after each piece. A KeyboardInterrupt alone can be lost: raised while a
    # finaliser runs, Python prints "Exception ignored" and the reply streams on to its token limit.
    ctrl_c = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda _signum, _frame: ctrl_c.set())
    pieces = stream_together(sessions, asked)
    try:
        for piece in pieces:
            parts[piece.row].append(piece.text)
            truncated[piece.row] = truncated[piece.row] or piece.truncated
            if out is not None and piece.row == 0 and piece.text:
                out.write(piece.text)
                out.flush()
            if ctrl_c.is_set():
                break
    except KeyboardInterrupt:  # a handler of the caller's (no main thread here)
        ctrl_c.set()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        pieces.close()  # the batch's adapters come off the model even when stopped
    stopped = ctrl_c.is_set()
    if stopped:
        truncated = [False] * len(sessions)
    return [("".join(p).strip(), cut) for p, cut in zip(parts, truncated)], stopped


def _json_head(sessions: list) -> dict:
    """Who answered, for ``--json``: the persona, the run (and the one beside it) and the base model."""
    first = sessions[0]
    head = {"persona": first.persona_id, "run": first.run_id, "base_model": first.spec.base_model}
    if len(sessions) > 1:
        head["beside_run"] = sessions[1].run_id
    return head


def _replay_test_dialogue(sessions: list, number: int, as_json: bool) -> int:
    """Ask each turn of the persona's ``number``th test dialogue after the reference replies before it, as
    evaluation does (and the app's "Load a test dialogue"); print each reply beside the reference."""
    first = sessions[0]
    dialogues = first.test_dialogues()
    if not dialogues:
        raise UserError(f"persona {first.persona_id} has no test dialogues")
    if not 1 <= number <= len(dialogues):
        raise UserError(f"persona {first.persona_id} has {len(dialogues)} test dialogue(s): give --test-dialogue "
                        f"1 to {len(dialogues)}, not {number}")
    dialogue = dialogues[number - 1]
    turns = []
    scored = first.spec.eval.max_test_dialogues
    if not as_json:
        print(f"Test dialogue {dialogue.dialogue_id} ({number} of {len(dialogues)}) of {describe(first)}, as "
              "evaluation asks it: each turn follows the reference replies before it."
              + (f" (The run's evaluation scored the first {scored} only.)" if scored and number > scored else ""))
    for index, (history, reference) in enumerate(dialogue.turns(), 1):
        answers, stopped = _stream_answers(sessions, [history] * len(sessions))
        if stopped:
            raise KeyboardInterrupt
        replies = [reply for reply, _ in answers]
        turn = {"turn": index, "user": history[-1].text if history else "", "assistant": replies[0],
                "truncated": answers[0][1], "reference": reference.text,
                "persona_dependent": reference.persona_dependent}
        if len(sessions) > 1:
            turn["beside"] = {"assistant": replies[1], "truncated": answers[1][1]}
        turns.append(turn)
        if as_json:
            continue
        star = " · persona-dependent ★" if reference.persona_dependent else ""
        # A listing: a newline in a reply must not fake a line of it.
        print(f"\nturn {index}{star}\n  {'user':<10} {one_line(turn['user'])}")
        labels = LABELS if len(sessions) > 1 else ("reply",)
        for label, reply in zip(labels, replies):
            print(f"  {label:<10} {one_line(reply)}")
        print(f"  {'reference':<10} {one_line(reference.text)}")
    if as_json:
        print(json.dumps({**_json_head(sessions), "test_dialogue": dialogue.dialogue_id,
                          "scored_by_evaluation": not scored or number <= scored, "turns": turns},
                         ensure_ascii=False, indent=2))
    return 0


def _ending(truncated: bool, stopped: bool, limit: int) -> str:
    if stopped:
        return " (stopped)"
    if truncated:
        return f" (cut off at the {limit}-token limit: start again with a larger --max-new-tokens for longer replies)"
    return ""


def _interactive(sessions: list) -> int:
    try:
        import readline  # noqa: F401 - line editing and history for input(), where the platform has it
    except ImportError:
        pass
    if len(sessions) == 1:
        print(f"Chatting with {describe(sessions[0])}.")
        prompts = ["assistant> "]
    else:
        for label, session in zip(LABELS, sessions):
            print(f"{label}: {describe(session)}")
        prompts = [f"{label}> " for label in LABELS]
    print(f"({HELP})")
    histories: list[list[Message]] = [[] for _ in sessions]
    limit = sessions[0].max_new_tokens
    while True:
        try:
            text = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return 0
        if text == "/reset":
            for history in histories:
                history.clear()
            print("(a new conversation)")
            continue
        sys.stdout.write(prompts[0])
        sys.stdout.flush()
        answers, stopped = _ask(sessions, histories, text, sys.stdout)
        print(_ending(answers[0][1], stopped, limit))
        # The second reply grew in the same batch; it is shown whole once the first has streamed.
        for prompt, (reply, truncated) in zip(prompts[1:], answers[1:]):
            print(f"{prompt}{reply}{_ending(truncated, stopped, limit)}")
