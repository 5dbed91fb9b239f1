"""The base model reaches Ray workers by content hash.

A hub id (and the generated ``qwen2.5-0.5b-shape``) is loaded by name on the worker, as a local job
loads it: workers with hub access need nothing more. Any other model (the converted SmolLM2,
tiny-qwen2, a local folder) is a folder the driver has; the driver puts its files into Ray's object
store once per content hash, and a worker whose node lacks that hash in its own cache writes them
into ``cache_dir()/models/by-hash/HASH`` (a temporary folder renamed into place, so a reader never
sees half a model) before it loads them. A second job on that node finds them there.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from shpers_core.atomic import atomic_dir
from shpers_core.models import load_base, registry
from shpers_core.models.cache import models_dir
from shpers_core.models.device import dtype_reason
from shpers_core.models.pretrained import is_hub_id, looks_like_path
from shpers_core.models.smollm2 import smollm2_dir
from shpers_core.models.tiny import tiny_qwen2_dir
from shpers_core.workspace import cache_dir

log = logging.getLogger(__name__)

BY_HASH = "by-hash"

# name -> the folder this process loads it from (a worker that took a shipped copy); so that the
# shards and data-parallel workers a job starts from a Ray worker ship the same files on.
_FOLDERS: dict[str, Path] = {}
# (folder, its files' sizes and mtimes) -> content hash: hashing a 7 B model takes a while.
_HASHES: dict[tuple, str] = {}
# (Ray cluster, content hash) -> the files' object ref, put once per driver process.
_PUT: dict[tuple[str, str], object] = {}
# (name, content hash, device, dtype) -> the loaded base model, one per worker process.
_LOADED: dict[tuple, object] = {}


@dataclass(frozen=True)
class ModelRef:
    """How a worker gets the base model ``name``: by name (``content_hash`` empty) or as shipped files."""

    name: str
    content_hash: str = ""
    files: object = None
    """An object ref of {relative path: bytes}."""
    size: int = 0
    folder: str = ""
    """The folder on the driver's node, used as it is by a worker on the same node that can read it in
    its own cache (or a folder the user named)."""
    node: str = ""
    in_cache: bool = False


def driver_folder(name: str) -> Path | None:
    """The folder the model ``name`` loads from on this machine; None for one loaded by name on any machine."""
    name = name.strip()
    if name in _FOLDERS:
        return _FOLDERS[name]
    if name == registry.DEFAULT_MODEL:
        return smollm2_dir()
    if name == "tiny-qwen2":
        return tiny_qwen2_dir()
    if name in ("qwen2.5-0.5b-shape", "qwen2.5-0.5b-instruct"):
        return None
    path = Path(name).expanduser()
    if path.exists() or looks_like_path(name):
        return path.resolve()
    if is_hub_id(name):
        return None
    return None  # an unknown name: the worker's load_base says what is wrong, as a local job would


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(folder).parts))


def content_hash(folder: Path) -> str:
    """sha256 over the folder's file names and contents (hidden files left out)."""
    files = _files(folder)
    key = (str(folder), tuple((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                              for p in files))
    if key not in _HASHES:
        h = hashlib.sha256()
        for p in files:
            h.update(p.relative_to(folder).as_posix().encode() + b"\0")
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            h.update(b"\0")
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def model_ref(name: str) -> ModelRef:
    """What a worker needs to load ``name`` (the driver side; Ray connected)."""
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray


    folder = driver_folder(name)
    if folder is None:
        return ModelRef(name)
    digest = content_hash(folder)
    key = (ray.get_runtime_context().gcs_address, digest)
    files = _files(folder)
    if key not in _PUT:
        _PUT.clear()  # one model pinned in the object store per driver (a study or sweep shares it)
        _PUT[key] = ray.put({p.relative_to(folder).as_posix(): p.read_bytes() for p in files})
    in_cache = folder.is_relative_to(cache_dir().resolve()) or folder.is_relative_to(cache_dir())
    return ModelRef(name, digest, _PUT[key], sum(p.stat().st_size for p in files), str(folder),
                    ray.get_runtime_context().get_node_id(), in_cache)


def worker_folder(ref: ModelRef, say) -> Path | None:
    """The folder this worker loads ``ref`` from, shipping its files into the node's cache when they are
    not there yet; ``say`` takes a log line. None: load by name."""
    # lazy: Ray is optional (pip install 'shpers[ray]') and slow to import
    import ray


    if not ref.content_hash:
        return None
    here = ray.get_runtime_context().get_node_id() == ref.node
    theirs = Path(ref.folder)
    own_cache = theirs.is_relative_to(cache_dir()) or theirs.is_relative_to(cache_dir().resolve())
    if here and (own_cache or not ref.in_cache) and (theirs / "config.json").is_file():
        folder = theirs  # the driver's own folder on this node: nothing to copy
    else:
        folder = models_dir() / BY_HASH / ref.content_hash
    mb = ref.size / 2**20
    if folder.is_dir():
        say(f"model {ref.name} in the node's cache ({folder}, {mb:.1f} MB)")
        return folder
    files = ray.get(ref.files)
    with atomic_dir(folder) as tmp:
        for rel, data in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    say(f"model {ref.name} shipped to this node ({mb:.1f} MB, content hash {ref.content_hash[:12]})")
    return folder


def worker_dtype(job_dtype: str | None, driver_dtype: str, on_gpu: bool) -> str | None:
    """The dtype a training worker loads the base model in.

    The job's own when it names one. On a GPU worker None: the worker picks for its GPU (bf16, or fp16
    with a loss scaler), as a run on that machine would, where a CPU driver's float32 would halve its
    speed and double its memory. Otherwise the driver's, which keeps CPU workers equal to the
    one-process run.
    """
    if job_dtype:
        return job_dtype
    return None if on_gpu else driver_dtype


def worker_precision(base, dtype: str | None) -> str:
    """A log line: the dtype a training worker holds the base model in (``dtype``: as it was asked), and why."""
    why = "as the job holds it" if dtype else dtype_reason(base.device)
    return f"base model on the training worker in {base.dtype} on {base.device} ({why})"


def load_on_worker(ref: ModelRef, device: str | None, dtype: str | None, say=lambda line: None):
    """The base model of ``ref`` on this worker, loaded once per process; named as the job names it.
    ``dtype`` None: this worker's own choice (:func:`shpers_core.models.device.pick_dtype`)."""
    folder = worker_folder(ref, say)
    key = (ref.name, ref.content_hash, device, dtype)
    if key not in _LOADED:
        _LOADED.clear()  # one base model per worker process
        if folder is None:
            base = load_base(ref.name, device=device, dtype=dtype)
        else:
            base = load_base(str(folder), device=device, dtype=dtype)
            base.name = ref.name  # runs and adapters record the name the job gave
        _LOADED[key] = base
    if folder is not None:
        _FOLDERS[ref.name] = folder
    return _LOADED[key]
