"""Summary numbers of a dataset, for the CLI table and the app's dataset page."""

from __future__ import annotations

from collections import Counter
from statistics import mean

from shpers_core.data.schema import Dataset
from shpers_core.data.splits import split_sizes


def dataset_stats(ds: Dataset) -> dict:
    """Counts, turns per dialogue, domain and archetype mix, persona-dependent share, split sizes."""
    dialogues = ds.dialogues()
    user_turns = [sum(m.role == "user" for m in d.messages) for d in dialogues]
    replies = [m for d in dialogues for m in d.messages if m.role == "assistant"]
    marked = [m for m in replies if m.persona_dependent is not None]
    splits = {"train": 0, "val": 0, "test": 0}
    for pid in ds.persona_ids:
        for key, n in zip(splits, split_sizes(len(ds.personas[pid].dialogues))):
            splits[key] += n
    archetypes = Counter(ds.personas[pid].archetype or "(none)" for pid in ds.persona_ids)
    return {
        "source": ds.source,
        "content_hash": ds.content_hash(),
        "personas": len(ds.personas),
        "dialogues": len(dialogues),
        "messages": sum(len(d.messages) for d in dialogues),
        "user_turns": {"mean": mean(user_turns), "min": min(user_turns), "max": max(user_turns)},
        "domains": dict(sorted(Counter(d.domain or "(none)" for d in dialogues).items())),
        "persona_dependent_share": (sum(bool(m.persona_dependent) for m in marked) / len(marked)) if marked else None,
        "archetypes": dict(sorted(archetypes.items())),
        "splits": splits,
    }
