"""Read what a smart-home reply does: which devices, which settings, which numbers.

The parser is a fixed vocabulary plus a few patterns, not a model: it is meant to be
predictable, so that the secondary metrics mean the same thing on every run. The vocabulary
and every rule are listed in docs/METRICS.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from shpers_core.evaluation.quantities import Quantity, extract_quantities, format_number


class Device(NamedTuple):
    area: str | None
    kind: str


class Parameter(NamedTuple):
    kind: str
    value: str


@dataclass(frozen=True)
class ParsedReply:
    """Devices (deduplicated, in order), parameters and numbers (each occurrence, in order)."""

    devices: tuple[Device, ...]
    parameters: tuple[Parameter, ...]
    numbers: tuple[str, ...]


# Spoken name -> device kind. Plurals ("lights", "switches") are matched from the singular.
DEVICE_ALIASES = {
    "light": "light", "lamp": "light", "bulb": "light", "lighting": "light", "light strip": "light",
    "lightstrip": "light", "led strip": "light", "chandelier": "light", "sconce": "light",
    "thermostat": "thermostat", "heating": "thermostat", "heater": "thermostat",
    "radiator": "thermostat", "boiler": "thermostat", "hvac": "thermostat",
    "central heating": "thermostat",
    "air conditioner": "air_conditioner", "air conditioning": "air_conditioner",
    "ac": "air_conditioner", "a/c": "air_conditioner", "aircon": "air_conditioner",
    "air con": "air_conditioner",
    "blind": "blinds", "shade": "blinds", "curtain": "blinds", "drape": "blinds",
    "shutter": "blinds",
    "fan": "fan",
    "tv": "tv", "television": "tv", "telly": "tv",
    "speaker": "speaker", "soundbar": "speaker", "sound system": "speaker", "stereo": "speaker",
    "lock": "lock", "door lock": "lock", "deadbolt": "lock",
    "door": "door",
    "garage door": "garage_door", "garage door opener": "garage_door",
    "vacuum": "vacuum", "vacuum cleaner": "vacuum", "robot vacuum": "vacuum", "roomba": "vacuum",
    "robovac": "vacuum",
    "camera": "camera", "alarm": "alarm", "alarm system": "alarm", "security system": "alarm",
    "doorbell": "doorbell", "plug": "plug", "outlet": "plug", "socket": "plug",
    "sprinkler": "sprinkler", "irrigation": "sprinkler",
    "coffee maker": "coffee_maker", "coffee machine": "coffee_maker",
    "espresso machine": "coffee_maker", "kettle": "kettle", "oven": "oven",
    "dishwasher": "dishwasher", "washing machine": "washing_machine", "washer": "washing_machine",
    "dryer": "dryer", "fridge": "fridge", "refrigerator": "fridge", "humidifier": "humidifier",
    "dehumidifier": "dehumidifier", "air purifier": "air_purifier", "purifier": "air_purifier",
    "fireplace": "fireplace", "water heater": "water_heater",
}

# Spoken area -> canonical area. "bedroom" and "master bedroom" stay distinct rooms.
AREA_ALIASES = {
    "living room": "living room", "lounge": "living room", "sitting room": "living room",
    "family room": "living room", "bedroom": "bedroom", "master bedroom": "master bedroom",
    "guest room": "guest room", "guest bedroom": "guest room", "kids room": "kids room",
    "kids' room": "kids room", "children's room": "kids room", "nursery": "nursery",
    "kitchen": "kitchen", "bathroom": "bathroom", "restroom": "bathroom", "washroom": "bathroom",
    "dining room": "dining room", "office": "office", "home office": "office", "study": "office",
    "hallway": "hallway", "hall": "hallway", "corridor": "hallway", "garage": "garage",
    "basement": "basement", "cellar": "basement", "attic": "attic", "porch": "porch",
    "patio": "patio", "deck": "deck", "balcony": "balcony", "garden": "garden",
    "backyard": "backyard", "back yard": "backyard", "front yard": "front yard", "yard": "yard",
    "driveway": "driveway", "laundry room": "laundry room", "laundry": "laundry room",
    "entryway": "entryway", "entrance": "entryway", "foyer": "entryway", "upstairs": "upstairs",
    "downstairs": "downstairs", "outside": "outside", "outdoor": "outside", "den": "den",
    "playroom": "playroom", "gym": "gym", "living area": "living room",
}

# Words that may sit between an area and its device: "bedroom ceiling lights".
_MODIFIERS = ("ceiling", "floor", "table", "desk", "bedside", "overhead", "main", "smart",
              "reading", "accent", "pendant", "led", "side", "night", "wall", "robot", "security",
              "window", "front", "back", "string", "fairy", "under-cabinet", "cabinet")

COLOURS = ("warm white", "cool white", "soft white", "daylight", "white", "red", "orange",
           "yellow", "green", "blue", "purple", "violet", "pink", "amber", "cyan", "magenta",
           "teal", "turquoise", "lavender", "gold", "indigo", "lime", "crimson")
_SHADES = ("light", "dark", "pale", "deep", "bright", "warm", "cool", "soft")

GENRES = ("hip hop", "hip-hop", "r&b", "lo-fi", "lofi", "jazz", "classical", "rock", "pop", "rap",
          "country", "blues", "ambient", "electronic", "edm", "reggae", "metal", "folk", "soul",
          "disco", "funk", "indie", "acoustic", "white noise", "rain sounds", "nature sounds",
          "podcast", "news", "audiobook")

_STATE_WORDS = [
    (r"\boff\b", "off"),
    (r"\b(?:open|opens|opened|opening)\b(?!\s+(?:to|up to)\b)", "open"),
    (r"\b(?:close|closes|closed|closing|shut|shuts|shutting)\b(?!\s+to\b)", "closed"),
    (r"\b(?:locked|locking)\b|\blocks?\b(?=\s+(?:the|your|my|all|up|it|them|both|front|back"
     r"|doors?)\b)", "locked"),
    (r"\bunlock(?:s|ed|ing)?\b", "unlocked"),
    (r"\bdisarm(?:s|ed|ing)?\b", "disarmed"),
    (r"\b(?:arm|arms|armed|arming)\b", "armed"),
    (r"\b(?:pause|pauses|paused|pausing)\b", "paused"),
    (r"\b(?:play|plays|playing|resume|resumes|resumed|resuming)\b", "playing"),
    (r"\b(?:stop|stops|stopped|stopping)\b", "stopped"),
    (r"\bunmut(?:e|es|ed|ing)\b", "unmuted"),
    (r"\b(?:mute|mutes|muted|muting)\b", "muted"),
]
_ON_AFTER_VERB = re.compile(
    r"\b(?:turn|turns|turned|turning|switch|switches|switched|switching|power|powers|powered"
    r"|powering|flip|flips|flipped|flipping)((?:\s+[a-z'/-]+){0,4}?)\s+on\b")
_ON_AFTER_STATE = re.compile(
    r"\b(?:is|are|now|still|stay|stays|remain|remains|back|left|be|been|being|keep|kept)\s+on\b"
    r"(?=\s*(?:$|[.,!?;:]|and\b|in\b|at\b|for\b|until\b|now\b|all\b))")

# Which setting a percentage is, judged by the nearest of these words in its clause.
_PERCENT_CONTEXT = {
    "volume": "volume", "loud": "volume", "louder": "volume", "quieter": "volume",
    "speaker": "volume", "tv": "volume", "brightness": "brightness", "bright": "brightness",
    "brighter": "brightness", "dim": "brightness", "dimmed": "brightness", "dimming": "brightness",
    "dimmer": "brightness", "light": "brightness", "lights": "brightness", "lamp": "brightness",
    "lamps": "brightness", "bulb": "brightness", "bulbs": "brightness", "lighting": "brightness",
    "blind": "position", "blinds": "position", "shade": "position", "shades": "position",
    "curtain": "position", "curtains": "position", "shutters": "position", "open": "position",
    "fan": "speed", "speed": "speed", "humidity": "humidity", "humidifier": "humidity",
    "dehumidifier": "humidity", "battery": "battery", "charged": "battery",
}
# A bare number right after one of these (and a few filler words) is that setting.
_BARE_CONTEXT = re.compile(
    r"\b(volume|temperature|thermostat|heating|heater|heat|brightness|channel)"
    r"(?:\s+(?:level|setting|is|was|now|set|to|at|of|up|down|the|it|by))*\s*$")
_BARE_KIND = {"volume": "volume", "brightness": "brightness", "channel": "channel"}

_STOP_TITLE = r"(?=\s+(?:on|in|by|from|at|for|through|via|to|and|now|next|until)\b|\s*[.,!?;:]|\s*$)"


def _alternation(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_DEVICE_RE = re.compile(r"(?<![a-z])(" + _alternation(DEVICE_ALIASES) + r")(?:e?s)?(?![a-z])")
_AREA = _alternation(AREA_ALIASES)
_AREA_BEFORE = re.compile(r"(?<![a-z])(" + _AREA + r")(?:'s)?\s+(?:(?:" + _alternation(_MODIFIERS)
                          + r")\s+){0,2}$")
_AREA_AFTER = re.compile(r"\s+(?:(?:on|off)\s+)?(?:in|on|of|at|for)\s+(?:the\s+|your\s+|my\s+)?("
                         + _AREA + r")(?![a-z])")
_COLOUR_RE = re.compile(r"(?<![a-z-])(?:(" + _alternation(_SHADES) + r")\s+)?("
                        + _alternation(COLOURS) + r")(?![a-z])(?!\s+noise)")
_GENRE_RE = re.compile(r"(?<![a-z])(" + _alternation(GENRES) + r")(?![a-z])")


def _device_kind(alias: str, text: str, start: int, end: int) -> str | None:
    following = text[end:end + 12]
    if alias == "light" and re.match(r"\s+(?:" + _alternation(COLOURS) + r"|jazz|music|rain|sleep"
                                     r"|breeze|snack|mode)\b", following):
        return None  # "light blue", "light jazz": an adjective
    if alias == "fan" and re.match(r"\s+of\b", following):
        return None
    if alias == "shade" and re.match(r"\s+of\b", following):
        return None
    if alias == "lock" and re.match(r"\s+(?:the|your|my|all|up|it|them|both|front|back|doors?)\b",
                                    following):
        return None  # "lock the door": the verb
    return DEVICE_ALIASES[alias]


def parse_devices(text: str) -> tuple[Device, ...]:
    """Devices named in normalised text, each with its area when one is attached to it."""
    found: list[Device] = []
    for m in _DEVICE_RE.finditer(text):
        kind = _device_kind(m.group(1), text, m.start(), m.end())
        if kind is None:
            continue
        area = None
        before = _AREA_BEFORE.search(text, 0, m.start())
        after = _AREA_AFTER.match(text, m.end())
        if before:
            area = AREA_ALIASES[before.group(1)]
        elif after:
            area = AREA_ALIASES[after.group(1)]
        device = Device(area, kind)
        if device not in found:
            found.append(device)
    # "Dimming the bedroom lights ... the lights are at 30%": the bare mention is the same lights.
    placed = {d.kind for d in found if d.area is not None}
    return tuple(d for d in found if d.area is not None or d.kind not in placed)


def _states(text: str) -> list[tuple[int, Parameter]]:
    out = []
    for pattern, state in _STATE_WORDS:
        out += [(m.start(), Parameter("state", state)) for m in re.finditer(pattern, text)]
    on_positions = set()
    for m in _ON_AFTER_VERB.finditer(text):
        if not re.search(r"\b(?:on|off)\b", m.group(1)):
            on_positions.add(m.end() - 2)
    on_positions.update(m.end() - 2 for m in _ON_AFTER_STATE.finditer(text))
    devices = r"(?:" + _alternation(DEVICE_ALIASES) + r")(?:e?s)?"
    on_positions.update(m.end() - 2 for m in re.finditer(
        r"(?<![a-z])" + devices + r"(?:'s)?\s+on\b(?=\s*(?:$|[.,!?;:]|and\b))", text))
    return out + [(p, Parameter("state", "on")) for p in on_positions]


def _percent_kind(text: str, q: Quantity) -> str:
    clause_start = max(text.rfind(c, 0, q.start) for c in ".!?;\n") + 1
    ends = [i for i in (text.find(c, q.end) for c in ".!?;\n") if i >= 0]
    clause_end = min(ends) if ends else len(text)
    best, best_distance = "percent", None
    for m in re.finditer(r"[a-z]+", text[clause_start:clause_end]):
        kind = _PERCENT_CONTEXT.get(m.group())
        if kind is None:
            continue
        start = clause_start + m.start()
        # Words before the number bind more tightly ("lights to 30%"), so they get a head start.
        distance = q.start - start if start < q.start else 2 * (start - q.end) + 1
        if best_distance is None or distance < best_distance:
            best, best_distance = kind, distance
    return best


def _quantity_parameters(text: str, quantities: list[Quantity]) -> list[tuple[int, Parameter]]:
    out = []
    for q in quantities:
        if q.unit == "time":
            out.append((q.start, Parameter("time", q.value)))
        elif q.unit.startswith("°"):
            out.append((q.start, Parameter("temperature", q.value + q.unit)))
        elif q.unit == "%":
            out.append((q.start, Parameter(_percent_kind(text, q), q.value)))
        elif q.unit == "min":
            out.append((q.start, Parameter("duration", format_number(q.minutes) + " min")))
        else:
            m = _BARE_CONTEXT.search(text, 0, q.start)
            if m:
                kind = _BARE_KIND.get(m.group(1), "temperature")
                value = q.value + "°" if kind == "temperature" else q.value
                out.append((q.start, Parameter(kind, value)))
    return out


def _media(text: str) -> list[tuple[int, Parameter]]:
    out = [(m.start(), Parameter("genre", m.group(1).replace("-", " ").replace("lofi", "lo fi")))
           for m in _GENRE_RE.finditer(text)]
    for m in re.finditer(r"\"([^\"]{1,80})\"|(?<![a-z])'([^']{2,80})'(?![a-z])", text):
        out.append((m.start(), Parameter("title", _clean_title(m.group(1) or m.group(2)))))
    if not any(p.kind == "title" for _, p in out):
        for m in re.finditer(r"\b(?:play|plays|playing|put on|putting on|queue|queued|queueing)\s+"
                             r"([a-z0-9'&][a-z0-9'& -]{0,60}?)" + _STOP_TITLE, text):
            title = _clean_title(m.group(1))
            if title and not _GENRE_RE.fullmatch(title):
                out.append((m.start(1), Parameter("title", title)))
    for m in re.finditer(r"\bby\s+([a-z0-9'&][a-z0-9'& -]{0,40}?)" + _STOP_TITLE, text):
        if re.search(r"\b(?:play|plays|playing|song|track|album)\b[^.!?;]*$", text[:m.start()]):
            out.append((m.start(1), Parameter("artist", _clean_title(m.group(1)))))
    return out


def _clean_title(title: str) -> str:
    title = re.sub(r"^(?:some|the|a|an|your|my|more|back|again)\s+", "", title.strip())
    title = re.sub(r"\s+(?:music|songs|playlist|station|radio|again)$", "", title)
    title = re.sub(r"[^a-z0-9'& ]+", " ", title)
    return re.sub(r"\s+", " ", title).strip()


def _settings(text: str) -> list[tuple[int, Parameter]]:
    out = [(m.start(), Parameter("colour", f"{m.group(1)} {m.group(2)}" if m.group(1) else m.group(2)))
           for m in _COLOUR_RE.finditer(text)]
    out += [(m.start(), Parameter("mode", m.group(1))) for m in re.finditer(r"\b([a-z]+)\s+mode\b", text)
            if m.group(1) not in ("the", "a", "this", "that", "your", "my", "which", "what", "to", "into",
                                  "in", "its", "their", "same", "new", "current")]
    out += [(m.start(), Parameter("speed", m.group(1) or m.group(2))) for m in re.finditer(
        r"\b(low|medium|high|max)\s+(?:speed|setting)\b|\bspeed\s+(?:to\s+|at\s+|on\s+)?(low|medium|high|max)\b",
        text)]
    out += [(m.start(), Parameter("brightness", "100")) for m in re.finditer(
        r"\b(?:full|maximum|max)\s+brightness\b", text)]
    return out


@lru_cache(maxsize=8192)
def parse_reply(text: str) -> ParsedReply:
    """Devices, parameters and numbers of one reply (see docs/METRICS.md for the rules)."""
    normalised, quantities = extract_quantities(text or "")
    parameters = (_states(normalised) + _quantity_parameters(normalised, quantities)
                  + _media(normalised) + _settings(normalised))
    parameters.sort(key=lambda item: item[0])
    return ParsedReply(devices=parse_devices(normalised),
                       parameters=tuple(p for _, p in parameters),
                       numbers=tuple(q.value for q in quantities))
