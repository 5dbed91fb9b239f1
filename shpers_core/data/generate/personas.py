"""A persona's latent preferences and its written character description."""

from __future__ import annotations

import random
from dataclasses import dataclass

from shpers_core.data.generate.archetypes import (
    ARCHETYPES,
    HA_COLORS,
    LIGHT_NAMES,
    ROOM_NAMES,
    SPEAKER_NAMES,
    STYLES,
    THERMOSTAT_NAMES,
    TIMES_OF_DAY,
    TV_NAMES,
    Archetype,
)

NAMES = {
    "She": ("Sarah", "Aisha", "Mei", "Priya", "Olga", "Hannah", "Elena", "Sofia", "Ingrid", "Chloe", "Fatima",
            "Nadia", "Lena", "Grace", "Maya", "Zoe", "Amara", "Ruth", "Ines", "Freya"),
    "He": ("James", "Tom", "Lukas", "Carlos", "Kwame", "Yusuf", "Ben", "Raj", "Marcus", "Diego", "Oliver",
           "Samuel", "Arjun", "Tariq", "Henrik", "Kenji", "Pavel", "Leo", "Noah", "Omar"),
}
# Details that say nothing about smart-home behaviour, so description text clusters weakly.
CITIES = ("Leeds", "Lisbon", "a small town near Utrecht", "Glasgow", "the outskirts of Dublin", "Bristol",
          "a flat in central Manchester", "a village in Kent", "Cardiff", "Brighton", "a suburb of Oslo")
HOBBIES = ("collects vinyl records", "bakes sourdough at weekends", "is learning Italian", "knits",
           "volunteers at the food bank", "plays the cello", "keeps bees", "builds model trains",
           "paints watercolours", "does crosswords", "sings in a choir", "fixes old bikes",
           "grows tomatoes on the balcony", "plays chess online", "writes short stories")
PETS = ("has a cat called Biscuit", "shares the home with a grumpy tortoise", "walks a spaniel twice a day",
        "has two budgies", "looks after a rescue greyhound", "feeds the neighbour's cat most evenings")
HOUSEHOLD = ("lives alone", "lives with a partner", "shares the house with a sister",
             "lives with two teenagers", "has a lodger", "lives with a partner and a toddler")


@dataclass
class Profile:
    """A persona's latent preferences: everything that decides the correct reply."""

    persona_id: str
    name: str
    archetype: Archetype
    style: str
    rooms: dict[str, str]  # role (bedroom, living, kitchen, extra) -> the persona's own name
    lights: dict[str, str]  # role -> own name of that room's main light
    speaker: str
    tv: str
    thermostat: str
    scenes: dict[tuple[str, str], tuple[int, str]]  # (role, time of day) -> (brightness, colour)
    temps: dict[str, float]  # time of day -> thermostat setpoint
    wake: int
    bed: int
    home: int
    music: str
    podcast: str
    show: str
    volume: int
    movie: tuple[int, str]
    away_temp: float
    implicit_rate: float
    character: str = ""

    @property
    def area_names(self) -> list[str]:
        return [self.rooms[r] for r in sorted(self.rooms)]

    @property
    def device_names(self) -> dict[str, str]:
        """Own device name -> HA domain (what hassil needs to resolve ``{name}``)."""
        names = {name: "light" for name in self.lights.values()}
        names[self.speaker] = "media_player"
        names[self.tv] = "media_player"
        names[self.thermostat] = "climate"
        return names


def clock(minutes: int) -> str:
    minutes %= 1440
    return f"{minutes // 60}:{minutes % 60:02d}"


def _half(rng: random.Random, lo: float, hi: float) -> float:
    return round(rng.uniform(lo, hi) * 2) / 2


def _five(rng: random.Random, lo: int, hi: int) -> int:
    return max(5, min(100, 5 * round(rng.randint(lo, hi) / 5)))


def make_profile(index: int, seed: int) -> Profile:
    """Profile number ``index``; depends only on (seed, index), so datasets of any size agree."""
    rng = random.Random(f"shpers-persona:{seed}:{index}")
    arch = ARCHETYPES[rng.randrange(len(ARCHETYPES))]
    rooms = {role: rng.choice(names) for role, names in ROOM_NAMES.items()}
    # Individual variation: one in five borrows another archetype's extra room.
    extra_from = rng.choice(ARCHETYPES) if rng.random() < 0.2 else arch
    rooms["extra"] = rng.choice(extra_from.extra_rooms)
    lights = {role: rng.choice(LIGHT_NAMES[role]) for role in ("bedroom", "living", "kitchen", "extra")}
    scenes = {}
    for role in sorted(rooms):
        for tod in TIMES_OF_DAY:
            lo, hi = arch.brightness[tod]
            colors = arch.colors[tod]
            color = rng.choice(colors) if rng.random() < 0.85 else rng.choice(HA_COLORS)
            scenes[(role, tod)] = (_five(rng, lo, hi), color)
    day = _half(rng, *arch.temperature)
    temps = {"morning": day, "day": day, "evening": day + 0.5 if rng.random() < 0.5 else day,
             "night": day - _half(rng, *arch.night_drop)}
    lo, hi = arch.brightness["evening"]
    persona = Profile(
        persona_id=f"persona_{index:03d}",
        name="",
        archetype=arch,
        style=rng.choices(STYLES, weights=arch.styles)[0],
        rooms=rooms,
        lights=lights,
        speaker=rng.choice(SPEAKER_NAMES),
        tv=rng.choice(TV_NAMES),
        thermostat=rng.choice(THERMOSTAT_NAMES),
        scenes=scenes,
        temps=temps,
        wake=5 * round(rng.randint(*arch.wake) / 5),
        bed=5 * round(rng.randint(*arch.bed) / 5),
        home=15 * round(rng.randint(*arch.home) / 15),
        music=rng.choice(arch.music),
        podcast=rng.choice(arch.podcasts),
        show=rng.choice(arch.shows),
        volume=_five(rng, 15, 60),
        movie=(_five(rng, max(5, lo - 30), max(10, lo - 10)), rng.choice(arch.colors["night"])),
        away_temp=day - _half(rng, 2.0, 5.0),
        implicit_rate=rng.uniform(0.22, 0.38),
    )
    subject = rng.choice(("She", "He"))
    persona.name = rng.choice(NAMES[subject])
    persona.character = describe(persona, "They" if rng.random() < 0.2 else subject, rng)
    return persona


def describe(p: Profile, subj: str, rng: random.Random) -> str:
    """Varied prose: some behaviour hints, several details that say nothing about behaviour."""
    arch = p.archetype
    occupation = rng.choice(arch.occupations) if rng.random() < 0.7 else rng.choice(rng.choice(ARCHETYPES).occupations)
    article = "an" if occupation[0] in "aeiou" else "a"
    household = rng.choice(HOUSEHOLD)
    openers = (
        f"{p.name} is {article} {occupation} who lives in {rng.choice(CITIES)}.",
        f"{p.name}, {article} {occupation}, {household} in {rng.choice(CITIES)}.",
        f"Meet {p.name}: {article} {occupation} based in {rng.choice(CITIES)}.",
        f"{p.name} works as {article} {occupation} and {household}.",
    )
    opener = rng.choice(openers)
    hints = list(arch.traits)
    rng.shuffle(hints)
    filler = [rng.choice(HOBBIES), rng.choice(PETS)] + ([] if household in opener else [household])
    rng.shuffle(filler)
    verb = (lambda v: v) if subj != "They" else _plural
    sentences = [opener]
    body = [f"{subj} {verb(hints[0])}."]
    if rng.random() < 0.6:
        body.append(f"{subj} {verb(hints[1])}.")
    body += [f"{subj} {verb(f)}." for f in filler[: rng.randint(1, 3)]]
    if rng.random() < 0.5:
        body.append(f"At home {p.name} calls the main living space the {p.rooms['living']}.")
    rng.shuffle(body)
    return " ".join(sentences + body)


def _plural(phrase: str) -> str:
    """Third person singular to plural for the few verbs the description uses."""
    first, _, rest = phrase.partition(" ")
    fixes = {"is": "are", "has": "have", "does": "do", "goes": "go", "lives": "live", "shares": "share"}
    if first in fixes:
        first = fixes[first]
    elif first.endswith("ies"):
        first = first[:-3] + "y"
    elif first.endswith(("ches", "shes", "sses", "xes")):
        first = first[:-2]
    elif first.endswith("s"):
        first = first[:-1]
    return f"{first} {rest}".strip()
