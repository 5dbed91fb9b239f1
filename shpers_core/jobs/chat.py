"""Talk to one persona's adapter of a finished run, replies streamed piece by piece."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

from shpers_core.data import split_dataset
from shpers_core.data.schema import Dialogue, Message
from shpers_core.errors import UserError
from shpers_core.evaluation import streaming
from shpers_core.evaluation.embedding import EmbeddingScorer
from shpers_core.evaluation.evaluate import generate_for_plan, stream_for_plan
from shpers_core.evaluation.plan import EvalPlan
from shpers_core.jobs.runner import load_base_cached, load_dataset_for
from shpers_core.jobs.spec import JobSpec, build_spec
from shpers_core.methods.retrieval import retriever
from shpers_core.models import DEFAULT_MODEL
from shpers_core.store import RunStore
from shpers_core.threads import computing
from shpers_core.training.adapters import load_lora_adapter, load_prefix_tuning, load_soft_prompt
from shpers_core.workspace import Workspace


class ChatSession:
    """A persona's way of answering in a run (its adapter, system prompt, soft prompt, KV prefix), rebuilt
    from the run's ``plan.json``; ``run_id=None`` chats with the bare base model. ``persona_id=None``
    takes the run's first persona (the dataset's first for the base model)."""

    def __init__(self, workspace: Workspace, run_id: str | None, persona_id: str | None, *,
                 base_model: str | None = None, max_new_tokens: int = 64):
        self.workspace = workspace
        self.max_new_tokens = max_new_tokens
        self.run_name = ""
        if run_id is not None:
            with RunStore(workspace.db_path) as store:
                run = store.get_run(run_id)
            self.spec = JobSpec.from_dict(run.params)
            self.run_id = run.id
            plan_file = workspace.run_dir(run.id) / "plan.json"
            if run.status != "finished" or not plan_file.exists():
                raise UserError(f"run {run.id} is {run.status}: only finished runs can be chatted with")
            recipes = json.loads(plan_file.read_text())
            if persona_id is None and recipes:
                persona_id = next(iter(recipes))
            if persona_id not in recipes:
                covered = list(recipes)
                shown = (", ".join(covered[:5]) + (f", ... ({len(covered)} in all)" if len(covered) > 5 else "")
                         if covered else "no persona")
                raise UserError(f"run {run.id} was not trained for persona {persona_id!r}; it covers {shown}")
            self.recipe = recipes[persona_id]
            self.run_name = run.name
            dataset_hash = run.dataset_hash
        else:
            self.spec = build_spec("base_model", base_model=base_model or DEFAULT_MODEL)
            self.run_id = None
            dataset_hash = ""
        self.dataset = load_dataset_for(self.spec, workspace, dataset_hash)
        if persona_id is None and self.dataset.persona_ids:
            persona_id = self.dataset.persona_ids[0]
        if run_id is None:
            self.recipe = EvalPlan().recipe(persona_id)
        self.persona_id = persona_id
        if persona_id not in self.dataset.personas:
            raise UserError(f"persona {persona_id!r} is not in the dataset")
        self.base = load_base_cached(self.spec.base_model, self.spec.device, self.spec.dtype)
        self.plan = self._plan()

    def _plan(self) -> EvalPlan:
        pid, r = self.persona_id, self.recipe
        where = self.workspace.resolve  # plan.json paths are relative to the workspace (absolute before v2)
        plan = EvalPlan()
        plan.adapters[pid] = load_lora_adapter(where(r["adapter"])) if r.get("adapter") else None
        if r.get("system"):
            plan.system[pid] = r["system"]
        if r.get("soft_prompt"):
            plan.soft_prompts[pid] = load_soft_prompt(where(r["soft_prompt"]))
        if r.get("kv_prefix"):
            plan.kv_prefixes[pid] = load_prefix_tuning(where(r["kv_prefix"]))
        self.system_prompt = self.spec.eval.system_prompt or None
        if r.get("retrieval_examples"):
            split = split_dataset(self.dataset, seed=self.spec.eval.split_seed)[pid]
            plan.system_for_turn = retriever({pid: split.train}, EmbeddingScorer().embed, r["retrieval_examples"],
                                             self.system_prompt)
        return plan

    def test_dialogues(self) -> list[Dialogue]:
        """The persona's test dialogues, whose replies the run never saw."""
        return split_dataset(self.dataset, seed=self.spec.eval.split_seed)[self.persona_id].test

    def reply(self, history: list[Message]) -> str:
        """The whole reply to the last user message of ``history``."""
        with computing(register=False):  # one thread while a job trains beside the chat
            return generate_for_plan(self.base, self.plan, [(self.persona_id, history)], self.system_prompt,
                                     self.max_new_tokens, 1)[0]

    def stream_reply(self, history: list[Message]) -> Iterator[str]:
        """The reply in pieces as they are generated (greedy, so the same text as :meth:`reply`)."""
        with computing(register=False):  # one thread while a job trains beside the chat
            yield from trimmed(stream_for_plan(self.base, self.plan, self.persona_id, history, self.system_prompt,
                                               self.max_new_tokens))


def trimmed(pieces: Iterator[str]) -> Iterator[str]:
    """``pieces`` without leading and trailing whitespace, as :meth:`ChatSession.reply` strips it.

    Whitespace inside the text is held back until something follows it.
    """
    pending, started = "", False
    for piece in pieces:
        if not started:
            piece = piece.lstrip()
            if not piece:
                continue
            started = True
        text = pending + piece
        kept = text.rstrip()
        pending = text[len(kept):]
        if kept:
            yield kept


def stream_together(sessions: list[ChatSession], histories: list[list[Message]]):
    """Replies of several chat sessions to their histories, generated in one mixed-adapter batch.

    Yields :class:`~shpers_core.evaluation.streaming.Piece` items whose ``row`` indexes
    ``sessions``; each row's last piece says whether the reply hit the token limit. Sessions on
    different base models cannot share a batch and are answered one after the other.
    """
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(sessions):
        groups.setdefault(id(s.base), []).append(i)
    with computing(register=False):  # one thread while a job trains beside the chat
        for rows in groups.values():
            base = sessions[rows[0]].base
            limit = max(sessions[i].max_new_tokens for i in rows)
            started = dict.fromkeys(rows, False)
            batch = [(sessions[i].plan, sessions[i].persona_id, list(histories[i]), sessions[i].system_prompt) for i in rows]
            for piece in streaming.stream_rows(base, batch, limit):
                row = rows[piece.row]
                text = piece.text
                if not started[row]:
                    text = text.lstrip()
                    started[row] = bool(text)
                yield replace(piece, row=row, text=text)
