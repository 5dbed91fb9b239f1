"""EdgeWisePersona (TCL Research Europe, CC BY 4.0): three line-aligned JSONL files, one line per user.

``characters.jsonl`` ``{"character"}``, ``routines.jsonl`` ``{"routines": [{"triggers", "actions"}]}``,
``sessions.jsonl`` ``{"sessions": [{"session_id", "meta", "messages": [{"role", "text"}],
"applied_routines"}]}`` (schema: ``src/edgewisepersona/definitions/`` of the project's repository).

Each user becomes a persona ``user-NNN`` (its line number); each session a dialogue. The session's
``meta`` (time of day, day of week, sun phase, weather, outdoor temperature), its id and the routines it
applies are kept as dialogue metadata; the user's routines as persona metadata. Every assistant reply in
a session that applies at least one routine is marked persona-dependent; replies in the other sessions
are marked as not.
"""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path

from shpers_core.data.errors import DatasetError
from shpers_core.data.importers.common import ImportResult, alternate, dialogue, finish, need
from shpers_core.data.loader import _records
from shpers_core.data.schema import Persona
from shpers_core.data.validate import _type_name

FILES = ("characters.jsonl", "routines.jsonl", "sessions.jsonl")
ROLES = ("user", "assistant")
NAME = "edgewisepersona"


def find_folder(path: Path) -> Path | None:
    """The folder under ``path`` (or holding the file ``path``) that has all three files, if any."""
    folder = path.parent if path.is_file() else path
    if all((folder / name).is_file() for name in FILES):
        return folder
    if path.is_dir():
        for candidate in sorted(path.rglob(FILES[2])):
            if all((candidate.parent / name).is_file() for name in FILES):
                return candidate.parent
    return None


def read_edgewisepersona(path: Path, *, strict: bool = False) -> ImportResult:
    """Convert the three files under ``path``; raise a one-line :class:`DatasetError` on the first problem."""
    folder = find_folder(path)
    if folder is None:
        raise DatasetError(f"{path}: not an EdgeWisePersona folder (needs {', '.join(FILES)} side by side)")
    streams = [_records(folder / name) for name in FILES]
    personas: dict[str, Persona] = {}
    first_seen: dict[str, str] = {}
    counts = [0, 0, 0]
    for row in zip_longest(*streams):
        for i, item in enumerate(row):
            counts[i] += item is not None
        if any(item is None for item in row):
            continue  # keep counting; the mismatch is reported below with every file's count
        (where_c, character_rec), (where_r, routines_rec), (where_s, sessions_rec) = row
        user = counts[2]
        pid = f"user-{user:03d}"
        character = need(character_rec, "character", str, where_c)
        routines = need(routines_rec, "routines", list, where_r)
        for j, routine in enumerate(routines):
            for key in ("triggers", "actions"):
                need(routine, key, dict, where_r, f"routines[{j}].{key}")
        sessions = need(sessions_rec, "sessions", list, where_s)
        persona = Persona(pid, character, meta={"source": "EdgeWisePersona", "user": user, "routines": routines})
        for j, session in enumerate(sessions):
            persona.dialogues.append(_session(session, j, where_s, pid, character, len(routines)))
        personas[pid] = persona
        first_seen[pid] = where_s
    if len(set(counts)) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in zip(FILES, counts))
        raise DatasetError(f"{folder}: the three files must have one line per user, line for line, but {listed}")
    if not personas:
        raise DatasetError(f"{folder}: the dataset is empty (no users)")
    return finish(personas, first_seen, str(folder), NAME, strict, "sessions")


def _session(session: object, j: int, where: str, pid: str, character: str, n_routines: int):
    field = f"sessions[{j}]"
    messages = need(session, "messages", list, where, f"{field}.messages")
    if not messages:
        raise DatasetError(f"{where}: field '{field}.messages' is empty (an empty session)")
    turns = []
    for k, m in enumerate(messages):
        mf = f"{field}.messages[{k}]"
        role = need(m, "role", str, where, f"{mf}.role")
        if role not in ROLES:
            raise DatasetError(f"{where}: field '{mf}.role' is {role!r}; must be 'user' or 'assistant'")
        turns.append((role, need(m, "text", str, where, f"{mf}.text"), k))
    meta = need(session, "meta", dict, where, f"{field}.meta")
    applied = session.get("applied_routines")
    if applied is not None:
        if not isinstance(applied, list) or not all(isinstance(a, int) and not isinstance(a, bool) and a >= 0
                                                    for a in applied):
            raise DatasetError(f"{where}: field '{field}.applied_routines' must be null or an array of routine "
                               f"indices (whole numbers from 0), got {_type_name(applied)}")
    kept = {"session_id": session.get("session_id", j), "context": meta, "applied_routines": applied}
    if isinstance(session.get("session_summarization"), str):
        kept["summary"] = session["session_summarization"]
    pairs = alternate(turns, where, f"{field}.messages")
    return dialogue(pid, character, pairs, bool(applied), dialogue_id=f"{pid}/{j:03d}", meta=kept)
