"""Turn one decoded record into a :class:`Dialogue`, or raise a one-line :class:`DatasetError`."""

from __future__ import annotations

from shpers_core.data.errors import DatasetError
from shpers_core.data.schema import ROLES, Dialogue, Message

OPTIONAL_STRINGS = ("dialogue_id", "domain", "archetype")


def _type_name(value: object) -> str:
    return "null" if value is None else {dict: "object", list: "array", str: "string", bool: "boolean",
                                          int: "number", float: "number"}.get(type(value), type(value).__name__)


def _string(value: object, where: str, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field '{field}' must be a string, got {_type_name(value)}")
    if not allow_empty and not value.strip():
        raise DatasetError(f"{where}: field '{field}' is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A JSON "\ud800" escape decodes to a lone surrogate that no UTF-8 file can hold.
        raise DatasetError(f"{where}: field '{field}' contains an unpaired surrogate at character {exc.start}") from None
    return value


def record_to_dialogue(record: object, where: str, strings: dict[str, str]) -> Dialogue:
    """Check one record; ``strings`` de-duplicates repeated text (the character, labels) across records."""
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: record must be a JSON object, got {_type_name(record)}")
    for key in ("persona_id", "character", "messages"):
        if key not in record:
            raise DatasetError(f"{where}: missing field '{key}'")
    persona_id = _string(record["persona_id"], where, "persona_id")
    character = _string(record["character"], where, "character")
    messages = record["messages"]
    if not isinstance(messages, list):
        raise DatasetError(f"{where}: field 'messages' must be an array, got {_type_name(messages)}")
    if not messages:
        raise DatasetError(f"{where}: field 'messages' is empty")
    parsed = tuple(_message(m, where, i, strings) for i, m in enumerate(messages))
    for i, m in enumerate(parsed):
        expected = ROLES[i % 2]
        if m.role != expected:
            raise DatasetError(
                f"{where}: field 'messages[{i}].role' is '{m.role}' but turns must alternate user/assistant "
                f"starting with user (expected '{expected}')"
            )
    if parsed[-1].role != "assistant":
        raise DatasetError(f"{where}: field 'messages[{len(parsed) - 1}]' is a user message; a dialogue must end with the assistant")
    extras = {}
    for key in OPTIONAL_STRINGS:
        value = record.get(key)
        if value is not None:
            value = _string(value, where, key, allow_empty=True)
            extras[key] = value if key == "dialogue_id" else _shared(strings, value)
    for key in ("meta", "persona_meta"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise DatasetError(f"{where}: field '{key}' must be an object, got {_type_name(record[key])}")
    if record.get("meta"):
        extras["meta"] = record["meta"]
    return Dialogue(
        persona_id=_shared(strings, persona_id),
        character=_shared(strings, character),
        messages=parsed,
        **extras,
    )


def _shared(strings: dict[str, str], value: str) -> str:
    # Every JSONL line repeats its persona's character text; keeping one copy per persona is
    # what keeps a loaded dataset much smaller than its file.
    return strings.setdefault(value, value)


def _message(m: object, where: str, i: int, strings: dict[str, str]) -> Message:
    field = f"messages[{i}]"
    if not isinstance(m, dict):
        raise DatasetError(f"{where}: field '{field}' must be an object, got {_type_name(m)}")
    if "role" not in m:
        raise DatasetError(f"{where}: missing field '{field}.role'")
    role = m["role"]
    if not isinstance(role, str):
        raise DatasetError(f"{where}: field '{field}.role' must be a string, got {_type_name(role)}")
    if role not in ROLES:
        raise DatasetError(f"{where}: field '{field}.role' is {role!r}; must be 'user' or 'assistant'")
    key = "text" if "text" in m else "content" if "content" in m else None
    if key is None:
        raise DatasetError(f"{where}: missing field '{field}.text'")
    text = _string(m[key], where, f"{field}.{key}")
    dependent = m.get("persona_dependent")
    if dependent is not None and not isinstance(dependent, bool):
        raise DatasetError(f"{where}: field '{field}.persona_dependent' must be true, false or null, got {_type_name(dependent)}")
    return Message(ROLES[0] if role == ROLES[0] else ROLES[1], text, dependent)
