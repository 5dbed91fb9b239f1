"""What travels to and from Ray workers, without Ray: batches in a shared folder and model content hashes."""

from __future__ import annotations

import pytest

from shpers_core.distributed.models import content_hash
from shpers_core.distributed.transfer import pack, put_shared, read_shared, take_shared, unpack


def test_a_batch_in_the_shared_folder_comes_back_whole_and_is_removed_once_taken(tmp_path):
    files = {"runs/r1/adapters/unified/adapter_model.safetensors": b"\x00weights",
             "runs/r1/adapters/unified/adapter_config.json": b"{}", "runs/r1/plan.json": b"[]"}
    batch = put_shared(tmp_path, files)
    assert not batch.startswith(".") and [p.name for p in tmp_path.iterdir()] == [batch]  # no half-written batch
    assert read_shared(tmp_path, batch) == files
    assert take_shared(tmp_path, batch) == files
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        put_shared(tmp_path, {"../outside": b"x"})
    with pytest.raises(ValueError):
        read_shared(tmp_path, "../elsewhere")


def test_files_travel_as_bytes_without_a_shared_folder_and_as_a_batch_name_with_one(tmp_path):
    files = {"runs/r1/checkpoints/unified/step/state.json": b"{}"}
    assert pack(files, None) == ("files", files) and unpack(pack(files, None), None) == files
    item = pack(files, tmp_path)
    assert item[0] == "shared" and isinstance(item[1], str)
    assert unpack(item, tmp_path) == files


def test_a_models_content_hash_follows_its_files_not_its_folder(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        (folder / "sub").mkdir(parents=True)
        (folder / "config.json").write_text('{"model_type": "qwen2"}')
        (folder / "sub" / "w.bin").write_bytes(b"123")
    (a / ".partial.tmp").write_text("ignored")  # an atomic write in progress is not part of the model
    assert content_hash(a) == content_hash(b)
    (b / "sub" / "w.bin").write_bytes(b"1234")
    assert content_hash(a) != content_hash(b)
