"""The default dataset: seeded personas from a few archetypes, HA-worded user turns."""

from __future__ import annotations

import random

from shpers_core.data.errors import DatasetError
from shpers_core.data.generate.dialogues import make_dialogue
from shpers_core.data.generate.personas import Profile, make_profile
from shpers_core.data.schema import Dataset, Persona


def generate_dataset(n_personas: int = 200, dialogues_per_persona: int = 30, seed: int = 0) -> Dataset:
    """``n_personas`` personas with ``dialogues_per_persona`` dialogues each; same seed, same data.

    Persona ``i`` depends only on ``(seed, i)``, so a smaller dataset is a prefix of a larger one.
    """
    if n_personas < 1:
        raise DatasetError(f"--personas must be at least 1, got {n_personas}")
    if dialogues_per_persona < 3:
        raise DatasetError(f"--dialogues must be at least 3 (one each for train, val, test), got {dialogues_per_persona}")
    personas = {}
    for index in range(n_personas):
        profile = make_profile(index, seed)
        rng = random.Random(f"shpers-dialogues:{seed}:{index}")
        dialogues = [make_dialogue(profile, k, rng) for k in range(dialogues_per_persona)]
        personas[profile.persona_id] = Persona(
            profile.persona_id, profile.character, dialogues, archetype=profile.archetype.name
        )
    return Dataset(personas, source=f"generated (seed {seed})")


__all__ = ["Profile", "generate_dataset", "make_profile"]
