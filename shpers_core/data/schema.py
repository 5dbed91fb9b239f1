"""The study's dialogue format as typed records.

A dialogue record on disk is ``{"persona_id", "character", "messages": [{"role", "text"}]}``
(``content`` is accepted for ``text``). Optional keys: ``dialogue_id``, ``domain``,
``archetype``, ``meta`` (an object kept with the dialogue, e.g. an imported session's context),
``persona_meta`` (an object kept with the persona, given on one of its dialogues, e.g. imported
routines), and per message ``persona_dependent`` (true when the right reply can only be given by
knowing the persona).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

ROLES = ("user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    text: str
    persona_dependent: bool | None = None

    def to_dict(self) -> dict:
        d = {"role": self.role, "text": self.text}
        if self.persona_dependent is not None:
            d["persona_dependent"] = self.persona_dependent
        return d


@dataclass(frozen=True)
class Dialogue:
    persona_id: str
    character: str
    messages: tuple[Message, ...]
    dialogue_id: str = ""
    domain: str = ""
    archetype: str = ""
    meta: dict = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict:
        d = {"persona_id": self.persona_id, "character": self.character,
             "messages": [m.to_dict() for m in self.messages]}
        for key in ("dialogue_id", "domain", "archetype", "meta"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        return d

    def turns(self) -> list[tuple[list[Message], Message]]:
        """Each assistant message with the real history before it (for turn-by-turn scoring)."""
        out = []
        for i, m in enumerate(self.messages):
            if m.role == "assistant":
                out.append((list(self.messages[:i]), m))
        return out


@dataclass
class Persona:
    persona_id: str
    character: str
    dialogues: list[Dialogue] = field(default_factory=list)
    archetype: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class Dataset:
    personas: dict[str, Persona]
    source: str = ""

    @property
    def persona_ids(self) -> list[str]:
        return sorted(self.personas)

    def dialogues(self) -> list[Dialogue]:
        return [d for pid in self.persona_ids for d in self.personas[pid].dialogues]

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of every dialogue: names the data a run was trained on."""
        h = hashlib.sha256()
        for d in self.dialogues():
            h.update(json.dumps(d.to_dict(), sort_keys=True, ensure_ascii=False).encode())
            h.update(b"\n")
        # Persona metadata counts too, but only where there is some, so older hashes stay valid.
        for pid in self.persona_ids:
            if self.personas[pid].meta:
                h.update(json.dumps([pid, self.personas[pid].meta], sort_keys=True, ensure_ascii=False).encode())
        return h.hexdigest()[:16]


@dataclass
class PersonaSplit:
    train: list[Dialogue]
    val: list[Dialogue]
    test: list[Dialogue]
