"""Table 5.1 as one Markdown report to share: the study's questions answered, the table, its differences drawn.

Everything in it is read from the table's rows (:func:`~shpers_core.evaluation.table.study_rows`), as the
CLI and the app show them one at a time.
"""

from __future__ import annotations

from datetime import datetime, timezone

from shpers_core.evaluation.findings import findings_markdown
from shpers_core.evaluation.forest import forest_text
from shpers_core.evaluation.table import to_markdown
from shpers_core.store.host import code_version

SUBSETS = (("all", "all turns"), ("persona_dependent", "persona-dependent turns"))


def report_markdown(rows, *, title: str = "Table 5.1") -> str:
    """The findings, the table with its note, and a text forest plot per subset of turns, in one document."""
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"# {title}", "", f"{len(rows)} rows, made with {code_version()} on {made}.", "",
             "## Findings", "", findings_markdown(rows).rstrip("\n"), "",
             "## The table", "", to_markdown(rows).rstrip("\n"), ""]
    for subset, turns in SUBSETS:
        parts += [f"## Differences from unified LoRA, {turns}", "", "```", forest_text(rows, subset).rstrip("\n"),
                  "```", ""]
    return "\n".join(parts)
