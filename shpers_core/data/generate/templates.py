"""User wording from Home Assistant's community-written English intent templates.

hassil's own ``sample_intents`` expands every combination of a template, which is far too many
sentences and yields them in a fixed order. Here one sentence is drawn per call by walking the
parsed template tree with the caller's RNG, and slots are filled with the persona's own values,
so the wording is HA's while the output stays seeded and fast.
"""

from __future__ import annotations

import random
from functools import cache, lru_cache

from hassil import (
    Alternative,
    Intents,
    ListReference,
    Permutation,
    RuleReference,
    Sentence,
    Sequence,
    TextChunk,
    normalize_whitespace,
)
from home_assistant_intents import get_intents


@lru_cache(maxsize=1)
def ha_intents() -> Intents:
    """The English HA intents, parsed once per process."""
    data = get_intents("en")
    if data is None:  # the package always ships English; a broken install is not a user error
        raise RuntimeError("home-assistant-intents has no English templates")
    return Intents.from_dict(data)


@cache
def _candidates(
    intent: str, combo: str, domain: str | None, lists: frozenset[str], response: str | None = None
) -> tuple:
    """Templates of one intent block that use exactly the slot lists the caller can fill."""
    intents = ha_intents()
    out = []
    for data in intents.intents[intent].data:
        if (data.metadata or {}).get("slot_combination") != combo:
            continue
        if domain is not None and domain not in data.domains:
            continue
        if response is not None and data.response != response:
            continue
        rules = {**intents.expansion_rules, **data.expansion_rules}
        for sentence in data.sentences:
            if frozenset(sentence.list_names(rules)) == lists:
                out.append((sentence, rules))
    if not out:
        raise KeyError(f"no HA template for {intent}/{combo} domain={domain} lists={sorted(lists)}")
    return tuple(out)


def phrase(
    rng: random.Random,
    intent: str,
    combo: str,
    values: dict[str, str],
    domain: str | None = None,
    response: str | None = None,
) -> str:
    """One user sentence for ``intent``/``combo`` with ``values`` keyed by HA list name."""
    sentence, rules = rng.choice(_candidates(intent, combo, domain, frozenset(values), response))
    text = normalize_whitespace(_walk(sentence.expression, rng, values, rules)).strip()
    return text[:1].upper() + text[1:]


def _walk(expr, rng: random.Random, values: dict[str, str], rules: dict[str, Sentence]) -> str:
    if isinstance(expr, TextChunk):
        return expr.original_text
    if isinstance(expr, Alternative):
        return _walk(rng.choice(expr.items), rng, values, rules)
    if isinstance(expr, Permutation):
        items = list(expr.items)
        rng.shuffle(items)
        return " ".join(_walk(item, rng, values, rules) for item in items)
    if isinstance(expr, Sequence):
        return "".join(_walk(item, rng, values, rules) for item in expr.items)
    if isinstance(expr, ListReference):
        return values[expr.list_name]
    if isinstance(expr, RuleReference):
        return _walk(rules[expr.rule_name].expression, rng, values, rules)
    raise TypeError(f"unexpected hassil expression {type(expr).__name__}")
