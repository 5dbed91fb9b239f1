"""The generator: determinism, shape of the default dataset, HA-template wording."""

from __future__ import annotations

import random
import time

import pytest
from hassil import TextSlotList, recognize

from shpers_core.data import DatasetError, dataset_stats, generate_dataset, load_dataset, write_jsonl
from shpers_core.data.generate import make_profile
from shpers_core.data.generate.personas import clock
from shpers_core.data.generate.templates import ha_intents
from shpers_core.models.tiny import SAMPLE_CORPUS

SAMPLE = SAMPLE_CORPUS


@pytest.fixture(scope="module")
def default():
    start = time.perf_counter()
    ds = generate_dataset()
    return ds, time.perf_counter() - start


def test_default_size_and_speed(default):
    ds, seconds = default
    stats = dataset_stats(ds)
    assert (stats["personas"], stats["dialogues"]) == (200, 6000)
    assert ds.persona_ids[0] == "persona_000" and ds.persona_ids[-1] == "persona_199"
    assert seconds < 20


def test_turns_domains_dependent_share_and_archetypes(default):
    stats = dataset_stats(default[0])
    assert 3.0 <= stats["user_turns"]["mean"] <= 3.4
    assert set(stats["domains"]) == {"device_control", "scheduling", "information"}
    assert all(n / stats["dialogues"] > 0.15 for n in stats["domains"].values())
    assert 0.25 <= stats["persona_dependent_share"] <= 0.35
    assert len(stats["archetypes"]) == 6 and min(stats["archetypes"].values()) >= 15
    assert stats["splits"] == {"train": 4000, "val": 1000, "test": 1000}


def test_records_carry_ids_domain_archetype_and_flags(default):
    ds, _ = default
    d = ds.personas["persona_042"].dialogues[7]
    assert d.dialogue_id == "persona_042-07" and d.domain and d.archetype
    assert all(m.persona_dependent is None for m in d.messages if m.role == "user")
    assert all(isinstance(m.persona_dependent, bool) for m in d.messages if m.role == "assistant")
    assert len({p.character for p in ds.personas.values()}) > 190


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    paths = [tmp_path / f"{i}.jsonl" for i in range(3)]
    for path, seed in zip(paths, (7, 7, 8)):
        write_jsonl(generate_dataset(6, 10, seed=seed), path)
    assert paths[0].read_bytes() == paths[1].read_bytes() != paths[2].read_bytes()


def test_sample_resource_is_the_seed_0_prefix(tmp_path):
    out = write_jsonl(generate_dataset(12, 30, seed=0), tmp_path / "s.jsonl")
    assert out.read_bytes() == SAMPLE.read_bytes()
    assert SAMPLE.stat().st_size < 1_500_000
    assert load_dataset(SAMPLE).content_hash() == generate_dataset(12, 30, seed=0).content_hash()


def test_bad_sizes_are_user_errors():
    with pytest.raises(DatasetError):
        generate_dataset(0)
    with pytest.raises(DatasetError, match="at least 3"):
        generate_dataset(2, 2)


def test_replies_name_values_from_the_persona_for_implicit_turns():
    profile = make_profile(3, 0)
    ds = generate_dataset(4, 30, seed=0)
    replies = [m.text for d in ds.personas[profile.persona_id].dialogues for m in d.messages
               if m.role == "assistant" and m.persona_dependent]
    assert replies
    own_values = {f"{b}%" for b, _ in profile.scenes.values()} | {f"{t:g}°C" for t in profile.temps.values()}
    own_values |= {profile.music, profile.podcast, profile.show, clock(profile.wake), clock(profile.bed),
                   clock(profile.home), f"{profile.movie[0]}%", f"{profile.away_temp:g}°C"}
    assert all(any(v in r for v in own_values) for r in replies), replies


def test_explicit_user_turns_are_recognised_as_ha_intents(default):
    ds, _ = default
    rng = random.Random(1)
    intents = ha_intents()
    checked = 0
    for pid in rng.sample(ds.persona_ids, 8):
        profile = make_profile(int(pid.split("_")[1]), 0)
        slot_lists = {
            "area": TextSlotList.from_strings(profile.area_names),
            "floor": TextSlotList.from_strings(["upstairs"]),
            "name": TextSlotList.from_tuples(
                [(n, n, {"domain": dom}) for n, dom in sorted(profile.device_names.items())]
                + [(n, n, {"domain": "todo"}) for n in ("schedule", "to-do", "calendar", "chores")]),
        }
        turns = [(d, i) for d in ds.personas[pid].dialogues for i in range(0, len(d.messages), 2)
                 if d.messages[i + 1].persona_dependent is False]
        for d, i in rng.sample(turns, 6):
            text = d.messages[i].text
            result = recognize(text, intents, slot_lists=slot_lists,
                               intent_context={"area": profile.area_names[0]}, language="en")
            assert result is not None, text
            checked += 1
    assert checked == 48
