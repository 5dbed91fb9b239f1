"""Assistant replies in the persona's reply style, always naming devices, rooms and values.

Metrics compare device names, parameter values and numbers between a model's reply and the
reference, so every style keeps those literally and varies only the wrapping.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    kind: str  # set, on, off, play
    target: str  # "bedroom lights", "Sonos", "lounge temperature"
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fact:
    """An answer or confirmation that is not a device action: a full and a terse wording."""

    full: str
    terse: str


def pct(value: int) -> str:
    return f"{value}%"


def deg(value: float) -> str:
    return f"{value:g}°C"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _the(target: str) -> str:
    # Brand-like device names (Sonos, Nest, Echo) read wrong with an article.
    return target if target[:1].isupper() or target.startswith("all ") else f"the {target}"


def _vals(values: tuple[str, ...]) -> str:
    # "30% warm white" reads as one setting; two numbers read better joined by "and".
    if len(values) == 2 and not values[1][:1].isdigit():
        return " ".join(values)
    return _and(list(values))


def _progressive(a: Action) -> str:
    if a.kind == "set":
        return f"setting {_the(a.target)} to {_vals(a.values)}"
    if a.kind == "play":
        return f"playing {a.values[0]} on {_the(a.target)}"
    return f"turning {a.kind} {_the(a.target)}"


def _past(a: Action) -> str:
    if a.kind == "set":
        return f"set {_the(a.target)} to {_vals(a.values)}"
    if a.kind == "play":
        return f"started {a.values[0]} on {_the(a.target)}"
    return f"switched {a.kind} {_the(a.target)}"


def _terse(a: Action) -> str:
    head = a.target[:1].upper() + a.target[1:]
    if a.kind == "set":
        return f"{head}: {', '.join(a.values)}"
    if a.kind == "play":
        return f"{a.values[0]} on {a.target}"
    return f"{head} {a.kind}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


OPENERS = {
    "chatty": ("Sure thing!", "Okay!", "Happy to help!", "You got it!", "No problem!"),
    "formal": ("Certainly.", "Of course.", "Very well.", "As you wish."),
    "playful": ("Ta-da!", "Poof!", "Abracadabra!", "On it, captain!", "Consider it done!"),
}
CLOSERS = {
    "chatty": ("Enjoy!", "Anything else?", "Let me know if you want it changed.", ""),
    "formal": ("", "Is there anything else?", ""),
    "playful": ("", "Magic.", "Nailed it.", ""),
}


def render_actions(actions: list[Action], style: str, rng: random.Random, lead: str = "") -> str:
    """Confirm ``actions`` in ``style``; ``lead`` is an optional first sentence (e.g. a greeting)."""
    if style == "terse":
        body = "; ".join(_terse(a) for a in actions) + "."
        return f"{lead} {body}".strip() if lead and rng.random() < 0.3 else body
    opener = rng.choice(OPENERS[style])
    if style == "formal":
        body = f"I have {_and([_past(a) for a in actions])}."
    else:
        body = _cap(_and([_progressive(a) for a in actions])) + ("!" if style == "playful" else ".")
    closer = rng.choice(CLOSERS[style])
    return " ".join(part for part in (lead or opener, body, closer) if part)


FACT_OPENERS = {
    "chatty": ("Sure!", "Okay,", "Let me check.", "Good question!"),
    "formal": ("", "Certainly.", ""),
    "playful": ("Drumroll...", "Here's the scoop:", "Beep boop!", "Fun fact:"),
}
FACT_CLOSERS = {
    "chatty": ("", "Anything else?", "Hope that helps!"),
    "formal": ("",),
    "playful": ("", "You're welcome!", ""),
}


def render_fact(fact: Fact, style: str, rng: random.Random) -> str:
    """Say ``fact`` (an answer or a scheduled confirmation) in ``style``."""
    if style == "terse":
        return fact.terse
    parts = (rng.choice(FACT_OPENERS[style]), fact.full, rng.choice(FACT_CLOSERS[style]))
    return " ".join(part for part in parts if part)
