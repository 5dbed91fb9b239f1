"""Randomly initialised Qwen2 models for tests and timing: ``tiny-qwen2`` and ``qwen2.5-0.5b-shape``.

Both use a small byte-level BPE tokenizer trained on our dialogue text, with Qwen's ChatML
template and special tokens, so chat rendering and label masking behave as with real Qwen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from shpers_core.atomic import atomic_dir

from .cache import models_dir
from .errors import ModelError
from .quiet import no_progress_bars
from .templates import QWEN_CHATML_TEMPLATE, QWEN_DEFAULT_SYSTEM

# Shipped inside the package, so an installed (not editable) shpers builds tiny-qwen2 too.
SAMPLE_CORPUS = Path(__file__).parent / "sample_dataset.jsonl"
TINY_VOCAB_SIZE = 2000
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Bump when the architecture or tokenizer recipe changes, so old cached builds are not reused.
_BUILD_VERSION = "2"

# Weights drawn at std 0.2 rather than Qwen2's 0.02: at 0.02 so small a model answers every prompt
# with the same token, and tests could not tell one adapter's replies from another's.
TINY_SHAPE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, max_position_embeddings=2048, initializer_range=0.2)
QWEN25_05B_SHAPE = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                        intermediate_size=4864, vocab_size=151936, max_position_embeddings=32768)


def train_tokenizer(corpus: Iterable[str], vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with Qwen's special tokens and ChatML template.

    It splits text as Qwen2's tokenizer does, because transformers reloads any tokenizer saved
    beside a ``qwen2`` config as ``Qwen2Tokenizer``, which imposes that pipeline.
    """
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([QWEN_DEFAULT_SYSTEM, *corpus], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = QWEN_CHATML_TEMPLATE
    return fast


def qwen2_config(tokenizer: PreTrainedTokenizerFast, shape: dict) -> Qwen2Config:
    """A Qwen2 config of ``shape`` (vocabulary sized to ``tokenizer`` unless given) with its special ids."""
    shape = {"vocab_size": len(tokenizer), **shape}
    return Qwen2Config(
        **shape, tie_word_embeddings=True, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def random_qwen2(tokenizer: PreTrainedTokenizerFast, shape: dict, seed: int = 0,
                 device: str = "cpu", dtype: torch.dtype = torch.float32) -> Qwen2ForCausalLM:
    """A Qwen2 of ``shape`` with weights drawn from ``seed`` (same seed, same weights), in eval mode."""
    config = qwen2_config(tokenizer, shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # Drawn on the CPU in fp32 so the weights do not depend on the device's generator.
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return model.to(device=device, dtype=dtype).eval()


def corpus_hash(texts: list[str], seed: int) -> str:
    h = hashlib.sha256(f"tiny-qwen2 v{_BUILD_VERSION} seed={seed}\n".encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def build_tiny_qwen2(out_dir: str | Path, corpus: Iterable[str], seed: int = 0) -> Path:
    """Train the tokenizer on ``corpus``, draw a tiny Qwen2 from ``seed`` and save both to ``out_dir``.

    Writes atomically; an existing ``out_dir`` is assumed complete and left as it is.
    """
    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return out_dir
    texts = [t for t in corpus if t]
    if not texts:
        raise ModelError("cannot build tiny-qwen2 from an empty corpus")
    with atomic_dir(out_dir) as tmp, no_progress_bars():
        tokenizer = train_tokenizer(texts)
        model = random_qwen2(tokenizer, TINY_SHAPE, seed=seed)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir


def dataset_texts(path: Path) -> Iterator[str]:
    """Every character description and message text of a JSONL dialogue file, in file order."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("character"):
                yield record["character"]
            for m in record.get("messages", []):
                yield m.get("text") or m.get("content") or ""


def tiny_qwen2_dir(corpus_path: Path = SAMPLE_CORPUS, seed: int = 0) -> Path:
    """The cached tiny-qwen2 built from ``corpus_path``, building it on first use (a few seconds)."""
    if not corpus_path.is_file():
        raise ModelError(f"tiny-qwen2 needs its tokenizer corpus, which is missing: {corpus_path}")
    try:
        texts = list(dataset_texts(corpus_path))
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ModelError(f"tiny-qwen2 corpus {corpus_path} is not a JSONL dialogue file: {exc}") from exc
    return build_tiny_qwen2(models_dir() / f"tiny-qwen2-{corpus_hash(texts, seed)}", texts, seed=seed)


def shape_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny tokenizer, for models whose weights are random anyway."""
    return AutoTokenizer.from_pretrained(tiny_qwen2_dir())
