"""One dialogue: a domain, about 3.2 user turns, explicit and implicit turns mixed."""

from __future__ import annotations

import random

from shpers_core.data.generate.implicit import IMPLICIT
from shpers_core.data.generate.personas import Profile
from shpers_core.data.generate.turns import FOLLOWUPS, OPENERS, Context, Turn
from shpers_core.data.schema import Dialogue, Message

DOMAINS = ("device_control", "scheduling", "information")
# Mean 3.23 user turns per dialogue, the study's "3.2 turns".
TURN_COUNTS = (1, 2, 3, 4, 5, 6)
TURN_WEIGHTS = (6, 20, 36, 25, 9, 4)
FOLLOWUP_RATE = 0.45


def make_dialogue(p: Profile, index: int, rng: random.Random) -> Dialogue:
    domain = rng.choices(DOMAINS, weights=p.archetype.domains)[0]
    n_turns = rng.choices(TURN_COUNTS, weights=TURN_WEIGHTS)[0]
    ctx = Context()
    messages: list[Message] = []
    for k in range(n_turns):
        turn = _next_turn(p, rng, ctx, domain, first=k == 0)
        messages.append(Message("user", turn.user))
        messages.append(Message("assistant", turn.reply, turn.persona_dependent))
    return Dialogue(
        persona_id=p.persona_id,
        character=p.character,
        messages=tuple(messages),
        dialogue_id=f"{p.persona_id}-{index:02d}",
        domain=domain,
        archetype=p.archetype.name,
    )


def _next_turn(p: Profile, rng: random.Random, ctx: Context, domain: str, first: bool) -> Turn:
    if rng.random() < p.implicit_rate:
        options = [g for g in IMPLICIT[domain] if g.__name__ not in ctx.used]
        if options:
            gen = rng.choice(options)
            ctx.used.append(gen.__name__)
            return gen(p, rng, ctx)
    if not first and rng.random() < FOLLOWUP_RATE:
        gens, weights = zip(*FOLLOWUPS[domain])
        turn = rng.choices(gens, weights=weights)[0](p, rng, ctx)
        if turn is not None:
            return turn
    gens, weights = zip(*OPENERS[domain])
    return rng.choices(gens, weights=weights)[0](p, rng, ctx)
