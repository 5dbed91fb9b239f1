"""Per-persona splits: sizes, determinism, independence between personas."""

from __future__ import annotations

import pytest

from shpers_core.data import DatasetError, load_dataset, split_dataset, split_sizes
from shpers_core.data.schema import Dataset, Persona
from shpers_core.models.tiny import SAMPLE_CORPUS

SAMPLE = SAMPLE_CORPUS


@pytest.fixture(scope="module")
def sample():
    return load_dataset(SAMPLE)


def ids(dialogues):
    return [d.dialogue_id for d in dialogues]


def test_thirty_dialogues_split_20_5_5(sample):
    for split in split_dataset(sample).values():
        assert (len(split.train), len(split.val), len(split.test)) == (20, 5, 5)


@pytest.mark.parametrize("n", range(3, 61))
def test_other_counts_are_proportional_with_one_val_and_test(n):
    train, val, test = split_sizes(n)
    assert train + val + test == n and val >= 1 and test >= 1 and train >= 1
    assert abs(val / n - 1 / 6) <= max(0.5 / n, 0.17) and abs(train / n - 2 / 3) < 0.34


def test_fewer_than_three_is_refused():
    with pytest.raises(DatasetError, match="at least 3"):
        split_sizes(2)


def test_split_is_a_partition_and_deterministic(sample):
    a, b = split_dataset(sample, seed=3), split_dataset(sample, seed=3)
    for pid, split in a.items():
        every = ids(split.train) + ids(split.val) + ids(split.test)
        assert sorted(every) == sorted(ids(sample.personas[pid].dialogues))
        assert ids(split.test) == ids(b[pid].test) and ids(split.val) == ids(b[pid].val)
    other = split_dataset(sample, seed=4)
    assert any(ids(a[pid].test) != ids(other[pid].test) for pid in a)


def test_a_persona_split_does_not_depend_on_other_personas(sample):
    pid = sample.persona_ids[5]
    alone = Dataset({pid: Persona(pid, sample.personas[pid].character, sample.personas[pid].dialogues)})
    assert ids(split_dataset(alone)[pid].test) == ids(split_dataset(sample)[pid].test)
