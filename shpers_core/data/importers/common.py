"""What every importer shares: one-line errors, turn normalisation, the minimum-dialogue rule."""

from __future__ import annotations

from dataclasses import dataclass, field

from shpers_core.data.errors import DatasetError
from shpers_core.data.loader import MIN_DIALOGUES
from shpers_core.data.schema import Dataset, Dialogue, Message, Persona
from shpers_core.data.validate import _type_name


@dataclass
class ImportResult:
    """A complete converted dataset and what was left out of it."""

    dataset: Dataset
    format: str
    skipped: list[str] = field(default_factory=list)  # persona ids with fewer than MIN_DIALOGUES dialogues

    def summary(self) -> str:
        ds = self.dataset
        text = f"{len(ds.personas)} personas, {len(ds.dialogues())} dialogues ({self.format})"
        if self.skipped:
            text += (f"; skipped {len(self.skipped)} persona{'s' if len(self.skipped) != 1 else ''} with fewer than "
                     f"{MIN_DIALOGUES} dialogues ({', '.join(self.skipped[:5])}{', …' if len(self.skipped) > 5 else ''})")
        return text


def need(record: object, key: str, kind: type | tuple, where: str, field_name: str | None = None) -> object:
    """``record[key]`` checked to be of ``kind``, or a one-line :class:`DatasetError` naming the field."""
    name = field_name or key
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: record must be a JSON object, got {_type_name(record)}")
    if key not in record:
        raise DatasetError(f"{where}: missing field '{name}'")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        wanted = {str: "a string", list: "an array", dict: "an object"}.get(kind, "a string or a number")
        raise DatasetError(f"{where}: field '{name}' must be {wanted}, got {_type_name(value)}")
    if isinstance(value, str) and not value.strip():
        raise DatasetError(f"{where}: field '{name}' is empty")
    return value


def alternate(turns: list[tuple[str, str, int]], where: str, field_name: str) -> list[tuple[str, str]]:
    """(role, text, source index) turns as user/assistant pairs: consecutive messages of one role are joined
    with a newline, an assistant greeting before the first user message and an unanswered last user message
    are dropped. A dialogue with no answered user message is refused."""
    out: list[list[str]] = []
    for role, text, _ in turns:
        if not out and role == "assistant":
            continue
        if out and out[-1][0] == role:
            out[-1][1] += "\n" + text
        else:
            out.append([role, text])
    if out and out[-1][0] == "user":
        out.pop()
    if not out:
        raise DatasetError(f"{where}: field '{field_name}' has no user message answered by the assistant")
    return [(r, t) for r, t in out]


def finish(personas: dict[str, Persona], first_seen: dict[str, str], source: str, fmt: str,
           strict: bool, field_name: str = "persona_id") -> ImportResult:
    """Drop (or, with ``strict``, refuse) personas too small to split into train, validation and test."""
    skipped = []
    for pid in list(personas):
        n = len(personas[pid].dialogues)
        if n < MIN_DIALOGUES:
            if strict:
                raise DatasetError(f"{first_seen[pid]}: field '{field_name}': persona '{pid}' has {n} dialogue{'s' if n != 1 else ''}; "
                                   f"at least {MIN_DIALOGUES} are needed (train, validation, test); without --strict "
                                   "such personas are skipped")
            skipped.append(pid)
            del personas[pid]
    if not personas:
        raise DatasetError(f"{source}: no persona has at least {MIN_DIALOGUES} dialogues; nothing to import")
    return ImportResult(Dataset(personas, source=source), fmt, sorted(skipped))


def dialogue(pid: str, character: str, pairs: list[tuple[str, str]], dependent: bool | None, **extra) -> Dialogue:
    messages = tuple(Message(role, text, dependent if role == "assistant" else None) for role, text in pairs)
    return Dialogue(persona_id=pid, character=character, messages=messages, **extra)
