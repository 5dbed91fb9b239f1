"""Silence the progress bars of the libraries underneath: the engine never writes to the terminal.

transformers' own bars follow its public switch (:func:`transformers.utils.logging.disable_progress_bar`).
Its GGUF reader calls tqdm directly; tqdm reads ``TQDM_DISABLE`` once, when it is first imported, so the
``shpers`` command (``cli/main.py``) and the app (``shpers_gui/app.py``) set it before importing anything;
code that imports the engine as a library sets it itself if it wants those bars gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from transformers.utils import logging as hf_logging


@contextmanager
def no_progress_bars() -> Iterator[None]:
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
