"""The engine names the app calls, gathered in one module.

Each name is imported on first use, so the window opens before torch and transformers load.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "load_dataset": "shpers_core.data",
    "generate_dataset": "shpers_core.data",
    "write_jsonl": "shpers_core.data",
    "split_dataset": "shpers_core.data",
    "DatasetError": "shpers_core.data",
    "import_dataset": "shpers_core.data.importers",
    "install_dataset": "shpers_core.data.library",
    "export_persona": "shpers_core.export",
    "paired_comparison": "shpers_core.evaluation.stats",
    "JobSpec": "shpers_core.jobs.spec",
    "built_like": "shpers_core.jobs.sources",
    "EmbeddingScorer": "shpers_core.evaluation.embedding",
    "study_rows": "shpers_core.evaluation.table",
    "to_markdown": "shpers_core.evaluation.table",
    "to_csv": "shpers_core.evaluation.table",
    "HEADERS": "shpers_core.evaluation.table",
    "COLUMNS": "shpers_core.evaluation.table",
    "table_note": "shpers_core.evaluation.table",
    "row_cells": "shpers_core.evaluation.table",
    "format_p": "shpers_core.evaluation.table",
    "unlike_settings": "shpers_core.evaluation.likeness",
    "pair_replies": "shpers_core.evaluation.turn_replies",
    "forest_rows": "shpers_core.evaluation.forest",
    "findings": "shpers_core.evaluation.findings",
    "NOTHING_TO_ANSWER": "shpers_core.evaluation.findings",
    "report_markdown": "shpers_core.evaluation.report",
    "parameter_effect": "shpers_core.evaluation.parameter_effect",
    "varied_settings": "shpers_core.evaluation.parameter_effect",
    "sibling_groups": "shpers_core.evaluation.parameter_effect",
    "like_point": "shpers_core.evaluation.parameter_effect",
    "point_cells": "shpers_core.evaluation.parameter_effect",
    "EFFECT_HEADERS": "shpers_core.evaluation.parameter_effect",
    "effect_summary": "shpers_core.evaluation.parameter_effect",
    "effect_markdown": "shpers_core.evaluation.parameter_effect",
    "effect_csv": "shpers_core.evaluation.parameter_effect",
    "format_value": "shpers_core.evaluation.parameter_effect",
    "flat_defaults": "shpers_core.jobs.spec",
    "HEADING": "shpers_core.evaluation.findings",
    "short_label": "shpers_core.evaluation.forest",
    "lowest_first": "shpers_core.evaluation.turn_replies",
    "turn_score": "shpers_core.evaluation.turn_replies",
    "message_role": "shpers_core.evaluation.turn_replies",
    "message_text": "shpers_core.evaluation.turn_replies",
    "dataset_label": "shpers_core.evaluation.likeness",
    "score_sources": "shpers_core.jobs.provenance",
    "describe_recipe": "shpers_core.jobs.provenance",
    "run_recipes": "shpers_core.jobs.provenance",
    "estimate_job": "shpers_core.jobs.estimate",
    "format_duration": "shpers_core.jobs.estimate",
    "total_seconds": "shpers_core.jobs.estimate",
    "left_to_run": "shpers_core.jobs.estimate",
    "ChatSession": "shpers_core.jobs.chat",
    "stream_together": "shpers_core.jobs.chat",
    "study_specs": "shpers_core.jobs.study",
    "kept_rows_built_on": "shpers_core.jobs.study",
    "PRESETS": "shpers_core.jobs.study",
    "study_progress": "shpers_core.jobs.study_progress",
    "describe_progress": "shpers_core.jobs.study_progress",
    "RESUME": "shpers_core.jobs.study_progress",
    "FINISHED": "shpers_core.jobs.study_progress",
    "NEW": "shpers_core.jobs.study_progress",
    "plan_delete": "shpers_core.jobs.delete",
    "delete_run": "shpers_core.jobs.delete",
    "human_size": "shpers_core.jobs.delete",
    "finish_pending_deletes": "shpers_core.jobs.delete",
    "discard_progress": "shpers_core.jobs.delete",
    "load_executor_choice": "shpers_core.distributed.ray_executor",
    "save_executor_choice": "shpers_core.distributed.ray_executor",
    "runner_for": "shpers_core.distributed.ray_executor",
}


def get(name: str) -> Any:
    """The engine object called ``name``."""
    return getattr(importlib.import_module(_WHERE[name]), name)


def write_dataset(dataset, path) -> None:
    """Write ``dataset`` as JSONL at ``path`` (parent folders created)."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    get("write_jsonl")(dataset, path)
