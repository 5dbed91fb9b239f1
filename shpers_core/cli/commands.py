"""The ``shpers`` commands: which module adds each one's parser, and its one-line help."""

from __future__ import annotations

# Each module exposes ``add_parser(subparsers)``; the parser it adds sets ``func(args) -> int``.
# Command -> (module, one-line help). Only the module of the command given is imported: the engine
# behind `run` takes seconds to import, and `shpers --help` or `shpers runs list` should not wait for it.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("shpers_core.cli.data_cmd", "generate, validate and summarise dialogue datasets"),
    "bench": ("shpers_core.cli.bench_cmd",
              "measure the machine's limit and the engine's training and evaluation speed against it"),
    "run": ("shpers_core.cli.run_cmd", "train and evaluate one method"),
    "methods": ("shpers_core.cli.run_cmd", "list methods, or show one method's parameters"),
    "chat": ("shpers_core.cli.chat_cmd", "chat with a persona's assistant from a finished run, or the base model"),
    "runs": ("shpers_core.cli.runs_cmd", "list, inspect, compare, read the replies of, export, resume or delete stored runs"),
    "study": ("shpers_core.cli.study_cmd", "run the whole study and print its results table"),
    "sweep": ("shpers_core.cli.sweep_cmd", "run one method once per value of one parameter"),
    "workspace": ("shpers_core.cli.workspace_cmd", "look after the workspace folder"),
}


def command_help(name: str) -> str:
    """The one-line help of command ``name``, for its module's ``add_parser``."""
    return COMMANDS[name][1]
