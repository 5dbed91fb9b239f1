"""Silence transformers' progress bars: the engine never writes to the terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from transformers import modeling_gguf_pytorch_utils as gguf_utils
from transformers.utils import logging as hf_logging


@contextmanager
def no_progress_bars() -> Iterator[None]:
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF reader uses tqdm directly, outside transformers' own progress-bar switch.
    gguf_tqdm = gguf_utils.tqdm
    gguf_utils.tqdm = partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = gguf_tqdm
        if enabled:
            hf_logging.enable_progress_bar()
