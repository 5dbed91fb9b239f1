"""Per-persona train/validation/test splits (the study's 20/5/5 for 30 dialogues)."""

from __future__ import annotations

import hashlib
import random

from shpers_core.data.errors import DatasetError
from shpers_core.data.schema import Dataset, Dialogue, PersonaSplit

VAL_SHARE = TEST_SHARE = 5 / 30


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, val, test) for ``n`` dialogues: ~67/17/16 %, at least one validation and one test."""
    if n < 3:
        raise DatasetError(f"a persona needs at least 3 dialogues to split, got {n}")
    val = max(1, round(n * VAL_SHARE))
    test = max(1, round(n * TEST_SHARE))
    return n - val - test, val, test


def split_dialogues(persona_id: str, dialogues: list[Dialogue], seed: int = 0) -> PersonaSplit:
    """Split one persona; depends only on the seed, the persona id and its dialogues."""
    n_train, n_val, _ = split_sizes(len(dialogues))
    # Seeding with the persona id keeps each persona's split fixed when others are added or removed.
    digest = hashlib.sha256(f"{seed}:{persona_id}".encode()).digest()
    order = list(range(len(dialogues)))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    train, val, test = ([dialogues[i] for i in sorted(part)] for part in parts)
    return PersonaSplit(train=train, val=val, test=test)


def split_dataset(ds: Dataset, seed: int = 0) -> dict[str, PersonaSplit]:
    """Every persona's split, keyed by persona id in sorted order."""
    return {pid: split_dialogues(pid, ds.personas[pid].dialogues, seed) for pid in ds.persona_ids}
