"""Fetch a dataset repository from the Hugging Face hub into the shpers cache (JSON and JSONL files only)."""

from __future__ import annotations

import re
from pathlib import Path

from shpers_core.data.errors import DatasetError
from shpers_core.workspace import cache_dir

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def looks_like_hub_id(source: str) -> bool:
    return bool(HUB_ID.match(source)) and not Path(source).exists()


def download(repo_id: str, revision: str | None = None) -> Path:
    """The local folder of ``repo_id``'s JSON/JSONL files; a one-line error when the hub cannot be reached."""
    # lazy: huggingface_hub is slow to import and only `shpers data import` from the hub needs it
    from huggingface_hub import snapshot_download


    try:
        folder = snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                   allow_patterns=["*.jsonl", "*.json", "**/*.jsonl", "**/*.json"],
                                   cache_dir=cache_dir() / "hub")
    except Exception as exc:  # the hub client raises many kinds (offline, not found, gated, HTTP)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        if "internet connection" in reason or "Name or service" in str(exc) or "offline" in reason.lower():
            reason = "the hub cannot be reached from this machine"
        raise DatasetError(f"{repo_id}: cannot download this dataset from the Hugging Face hub: {reason}; "
                           "download it where the hub is reachable and import the local folder") from None
    return Path(folder)
