"""``shpers chat [RUN]``: talk to a persona's assistant from a terminal, as the app's Chat tab does.

Interactive on a terminal (replies stream token by token; Ctrl+C stops a reply). Scriptable: the
messages given with ``-m``, or one per line on a piped stdin, are asked in turn in one conversation
and each reply is printed on its own line (``--json``: one object with every turn).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

from shpers_core.cli.commands import command_help
from shpers_core.data.schema import Message
from shpers_core.errors import UserError
from shpers_core.workspace import Workspace

HELP = "/quit or Ctrl+D ends the chat; /reset starts a new conversation; Ctrl+C stops a reply"


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
    p.add_argument("-m", "--message", action="append", default=[], metavar="TEXT",
                   help="a message to send; repeat for a conversation (then nothing is read from the terminal)")
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

    scripted = bool(args.message) or args.json or not sys.stdin.isatty()
    if not scripted:
        print("Loading the model...", file=sys.stderr, flush=True)
    session = ChatSession(Workspace.open(args.workspace), args.run, args.persona, base_model=args.model,
                          max_new_tokens=args.max_new_tokens)
    if not scripted:
        return _interactive(session)
    messages = args.message or [line.strip() for line in sys.stdin if line.strip()]
    turns = []
    history: list[Message] = []
    for text in messages:
        reply, truncated, _ = _ask(session, history, text, None)
        turns.append({"user": text, "assistant": reply, "truncated": truncated})
        if not args.json:
            print(reply, flush=True)
            if truncated:
                print(f"shpers: warning: reply {len(turns)} was cut off at the {args.max_new_tokens}-token limit "
                      "(raise --max-new-tokens for longer replies)", file=sys.stderr)
    if args.json:
        print(json.dumps({"persona": session.persona_id, "run": session.run_id, "base_model": session.spec.base_model,
                          "turns": turns}, ensure_ascii=False, indent=2))
    return 0


def describe(session) -> str:
    """One line naming who answers: the persona, and the run (name, method) or the bare base model."""
    if session.run_id is None:
        who = f"the base model {session.spec.base_model} (no run)"
    else:
        name = f'"{session.run_name}", ' if session.run_name else ""
        who = f"run {session.run_id} ({name}{session.spec.method})"
    return f"{session.persona_id} through {who}"


def _pieces(session, history: list[Message], text: str) -> Iterator:
    from shpers_core.jobs.chat import stream_together  # lazy: torch

    return stream_together([session], [[*history, Message("user", text)]])


def _ask(session, history: list[Message], text: str, out) -> tuple[str, bool, bool]:
    """Ask ``text`` after ``history`` and add both to it: (the reply, cut at the token limit, stopped).

    With ``out``, the reply is written there as it grows; Ctrl+C stops it, keeping what came so far.
    """
    parts: list[str] = []
    truncated = stopped = False
    pieces = _pieces(session, history, text)
    try:
        for piece in pieces:
            parts.append(piece.text)
            truncated = truncated or piece.truncated
            if out is not None and piece.text:
                out.write(piece.text)
                out.flush()
    except KeyboardInterrupt:
        stopped = True
    finally:
        pieces.close()  # the batch's adapters come off the model even when stopped
    reply = "".join(parts).strip()
    history += [Message("user", text), Message("assistant", reply)]
    return reply, truncated, stopped


def _interactive(session) -> int:
    try:
        import readline  # noqa: F401 - line editing and history for input(), where the platform has it
    except ImportError:
        pass
    print(f"Chatting with {describe(session)}.\n({HELP})")
    history: list[Message] = []
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
            history.clear()
            print("(a new conversation)")
            continue
        sys.stdout.write("assistant> ")
        sys.stdout.flush()
        _, truncated, stopped = _ask(session, history, text, sys.stdout)
        if stopped:
            print(" (stopped)")
        elif truncated:
            print(f" (cut off at the {session.max_new_tokens}-token limit: start again with a larger "
                  "--max-new-tokens for longer replies)")
        else:
            print()
