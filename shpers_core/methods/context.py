"""Everything a method needs while it runs: data, the base model, training, saving, lookups.

The runner (``jobs/runner.py``) builds one per run; methods only read it and call it, so
``methods/`` imports nothing from ``jobs/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from shpers_core.atomic import recover_dir
from shpers_core.data.schema import Dataset, PersonaSplit
from shpers_core.evaluation.config import EvalParams
from shpers_core.evaluation.embedding import EmbeddingScorer
from shpers_core.events import Reporter
from shpers_core.methods.clustering import persona_features
from shpers_core.models import encode_dialogue
from shpers_core.names import child
from shpers_core.training.adapter_types import Adapter
from shpers_core.training.adapters import load_lora_adapter, save_lora_adapter
from shpers_core.training.batching import Example
from shpers_core.training.config import LoraParams, TrainParams
from shpers_core.training.fit import fit_adapter
from shpers_core.training.multi import checkpointed_adapters, train_many
from shpers_core.workspace import Workspace

if TYPE_CHECKING:
    # Type only: jobs/ builds the context and sits above methods/.
    from shpers_core.jobs.spec import JobSpec
    from shpers_core.models import BaseModel
    from shpers_core.store import RunStore

FIXED_NAMES = frozenset({"unified", "batched"})


@dataclass
class MethodContext:
    spec: JobSpec
    workspace: Workspace
    store: RunStore
    run_id: str
    reporter: Reporter
    base: BaseModel
    dataset: Dataset
    splits: dict[str, PersonaSplit]
    personas: list[str]
    lora: LoraParams
    train: TrainParams
    eval: EvalParams
    trainable_params: int = 0
    train_tokens: int = 0
    """Real tokens trained on by this run (all adapters), for its tokens/s."""
    train_padded: int = 0
    train_seconds: float = 0.0
    _examples: dict[tuple[str, str], list[Example]] = field(default_factory=dict, repr=False)
    folder_names: dict[str, str] = field(default_factory=dict, repr=False)
    """Each adapter or checkpoint folder this run named, with the name as written (a persona id...)."""
    sources: dict[str, str] = field(default_factory=dict)
    """Run id of each method this one declared in ``MethodSpec.requires`` (resolved by the runner)."""

    @property
    def run_dir(self) -> Path:
        return self.workspace.run_dir(self.run_id)

    def adapter_dir(self, name: str) -> Path:
        """The folder of adapter ``name`` (a persona id, cluster or merge name) under this run."""
        return self._named_dir("adapters", name)

    def checkpoint_dir(self, name: str) -> Path:
        return self._named_dir("checkpoints", name)

    def _named_dir(self, kind: str, name: str) -> Path:
        # Our own run-wide names stay readable; a derived name always ends in "-<hash>", so no
        # user id can take them.
        path = self.run_dir / kind / name if name in FIXED_NAMES else child(self.run_dir / kind, name)
        self.folder_names[str(path)] = name
        return path

    @property
    def pad_id(self) -> int:
        tok = self.base.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    @property
    def system_prompt(self) -> str | None:
        return self.eval.system_prompt or None

    def dialogues(self, persona_id: str, split: str):
        dialogues = getattr(self.splits[persona_id], split)
        if split == "train" and self.eval.max_train_dialogues:
            dialogues = dialogues[: self.eval.max_train_dialogues]
        if split == "test" and self.eval.max_test_dialogues:
            dialogues = dialogues[: self.eval.max_test_dialogues]
        return dialogues

    def examples(self, persona_id: str, split: str) -> list[Example]:
        """Tokenised dialogues of one persona's split (cached)."""
        key = (persona_id, split)
        if key not in self._examples:
            self._examples[key] = [
                encode_dialogue(self.base.tokenizer, d, system=self.system_prompt,
                                max_length=self.train.max_length, persona_id=persona_id)
                for d in self.dialogues(persona_id, split)
            ]
        return self._examples[key]

    def pooled_examples(self, persona_ids: list[str], split: str) -> list[Example]:
        return [e for pid in persona_ids for e in self.examples(pid, split)]

    def fit_lora(self, train: list[Example], val: list[Example] | None, name: str,
                 train_params: TrainParams | None = None, series: str = "train"):
        """Train one LoRA adapter with checkpoints under this run's folder."""
        result = fit_adapter(self.base.model, self.pad_id, train, val, self.lora, train_params or self.train,
                             self.reporter, checkpoint_dir=self.checkpoint_dir(name), series=series)
        self.note_training(result)
        return result

    def batch_to_train(self, names: list[str], todo: list[str]) -> list[str]:
        """The adapters a batched training of ``todo`` (out of ``names``) should train.

        Stopped while saving the adapters, a run has some saved and a checkpoint of them all: it
        finishes the batch the checkpoint holds (its adapters share dropout draws) rather than train
        the rest again as another batch.
        """
        if todo and len(todo) < len(names) and checkpointed_adapters(self.checkpoint_dir("batched")) == list(names):
            return list(names)
        return list(todo)

    def fit_lora_batched(self, train: dict[str, list[Example]], val: dict[str, list[Example]],
                         micro_batch_rows: int | None = None):
        """Train one LoRA adapter per key of ``train`` together (:func:`train_many`), with checkpoints."""
        result = train_many(self.base.model, self.pad_id, train, self.lora, self.train, self.reporter,
                            val_by_adapter=val, micro_batch_rows=micro_batch_rows,
                            checkpoint_dir=self.checkpoint_dir("batched"))
        self.note_training(result)
        return result

    def note_training(self, result) -> None:
        """Count a trainer's result (``FitResult`` or ``MultiFitResult``) in this run's totals."""
        self.trainable_params += result.trainable_params
        self.train_tokens += result.tokens
        self.train_padded += result.padded
        self.train_seconds += result.seconds

    def save_lora(self, name: str, state_dict, persona_id: str | None = None, *, rank: int | None = None,
                  lora_alpha: float | None = None, kind: str = "adapter") -> Adapter:
        """Write an adapter as a PEFT folder under this run and record it in the store."""
        path = save_lora_adapter(
            self.adapter_dir(name), state_dict,
            rank=rank or self.lora.rank, lora_alpha=lora_alpha or self.lora.lora_alpha,
            target_modules=list(self.lora.target_modules), base_model=self.base.name,
            dropout=self.lora.lora_dropout,
        )
        self.store.add_artefact(self.run_id, kind, str(path), persona_id=persona_id)
        return Adapter(state_dict=state_dict, scaling=(lora_alpha or self.lora.lora_alpha) / (rank or self.lora.rank),
                       path=str(path))

    def saved_adapter(self, name: str) -> Adapter | None:
        """An adapter this run saved before it was interrupted, if any (lets a resume skip it)."""
        path = self.adapter_dir(name)
        recover_dir(path)
        return load_lora_adapter(path) if (path / "adapter_config.json").exists() else None

    def embed(self, texts: list[str]) -> np.ndarray:
        return EmbeddingScorer().embed(texts)

    def persona_vectors(self, kind: str) -> np.ndarray:
        """Embeddings of the selected personas: their description, or their own training dialogues."""
        personas = [self.dataset.personas[p] for p in self.personas]
        by_persona = {p: self.dialogues(p, "train") for p in self.personas}
        return persona_features(personas, kind, self.embed, by_persona)

    def record_metric(self, name: str, value: float) -> None:
        self.store.set_metrics(self.run_id, {name: float(value)}, subset="info")

    def source_run(self, method: str) -> str:
        """The run of ``method`` this one builds on, found or trained by the runner before ``run``."""
        try:
            return self.sources[method]
        except KeyError:
            raise RuntimeError(f"{self.spec.method} uses a {method} run but does not list it in "
                               "MethodSpec.requires") from None

    def adapters_of(self, run_id: str) -> dict[str | None, Adapter]:
        """The LoRA adapters a run saved, by persona id (None for a run-wide adapter)."""
        out: dict[str | None, Adapter] = {}
        for art in self.store.artefacts(run_id, kind="adapter"):
            out[art.persona_id] = load_lora_adapter(Path(art.path))
        return out
