"""Parameters that pass a range check but are not numbers, integers the store cannot hold, empty
values, target modules and devices the model or machine lacks: each is one line and exit code 2
before anything is written (not even an empty store). A loss that becomes NaN stops the job."""

from __future__ import annotations

import copy

import pytest
import torch

from shpers_core.cli.main import main
from shpers_core.data import generate_dataset, write_jsonl
from shpers_core.events import CollectingReporter
from shpers_core.jobs.runner import run_job
from shpers_core.jobs.spec import build_spec
from shpers_core.params import ParamError
from shpers_core.store import RunStore
from shpers_core.workspace import Workspace

TINY = ["--model", "tiny-qwen2", "--device", "cpu", "-q", "--param", "num_epochs=1", "--param", "max_length=64",
        "--param", "max_test_dialogues=1", "--param", "max_new_tokens=2"]


@pytest.fixture
def workspace(tmp_path, shpers_cache) -> Workspace:
    """A workspace with a dataset and no store yet: a refused command must not create one."""
    ws = Workspace.open(tmp_path / "ws")
    write_jsonl(generate_dataset(3, 6, seed=0), ws.dataset_path)
    return ws


def shpers(ws: Workspace, capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["--workspace", str(ws.root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(rc: int, err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("shpers: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


REFUSED = {
    "nan learning rate": (["learning_rate=nan"], ["learning_rate=nan", "finite"]),
    "nan lora_alpha": (["lora_alpha=nan"], ["lora_alpha=nan", "finite"]),
    "inf alpha": (["lora_alpha=inf"], ["lora_alpha=inf"]),
    "-inf dropout": (["lora_dropout=-inf"], ["lora_dropout"]),
    "overflowing exponent": (["max_grad_norm=1e999"], ["max_grad_norm=inf"]),
    "seed beyond 64 bits": (["seed=100000000000000000000000"], ["seed=100000000000000000000000"]),
    "huge max_length": (["max_length=9223372036854775808"], ["max_length", "too large"]),
    "empty float": (["learning_rate="], ["learning_rate", "empty value"]),
    "empty int": (["seed="], ["seed", "empty value"]),
    "empty list": (["target_modules="], ["target_modules", "empty"]),
    "unknown module": (["target_modules=foo_proj"], ["'foo_proj'", "valid: ", "q_proj", "v_proj"]),
    "embedding": (["target_modules=q_proj,embed_tokens"], ["'embed_tokens'", "valid: "]),
    "module path": (["target_modules=model.layers.0.self_attn.q_proj"], ["not its path", "valid: "]),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_parameter_is_one_line_and_leaves_no_store(workspace, capsys, case):
    params, fragments = REFUSED[case]
    argv = [a for p in params for a in ("--param", p)]
    rc, _, err = shpers(workspace, capsys, "run", "unified_lora", *TINY, *argv)
    one_line(rc, err, *fragments)
    assert not workspace.db_path.exists(), "a refused --param left a store behind"


@pytest.mark.parametrize("device, words", [("cuda:7", "cuda:7"), ("tpu", "unknown device 'tpu'")])
def test_unavailable_device_is_refused_before_any_run_is_recorded(workspace, capsys, device, words):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that GPU")
    argv = [a for a in TINY if a not in ("--device", "cpu")]
    rc, _, err = shpers(workspace, capsys, "run", "unified_lora", *argv, "--device", device)
    one_line(rc, err, words)
    assert not workspace.db_path.exists()


def test_int_and_float_parameters_reject_what_sqlite_and_torch_cannot_take():
    for key, value in (("learning_rate", float("nan")), ("warmup_ratio", float("inf")), ("seed", 2**63),
                       ("seed", 2**31), ("split_seed", -1)):
        with pytest.raises(ParamError, match=key):
            build_spec("unified_lora", {key: value})
    assert build_spec("unified_lora", {"seed": 2**31 - 1}).train.seed == 2**31 - 1


def test_newline_in_a_run_name_is_refused(workspace, capsys):
    rc, _, err = shpers(workspace, capsys, "run", "unified_lora", *TINY, "--name", "ok\nr2099 finished fake")
    one_line(rc, err, "run name", "newline")
    assert not workspace.db_path.exists()


def test_a_loss_that_becomes_nan_fails_the_run_at_that_step_and_saves_no_adapter(workspace, tiny_base):
    broken = copy.copy(tiny_base)
    broken.model = copy.deepcopy(tiny_base.model)
    # NaN in training mode only: the check before training (in eval mode) passes, the first step does not.
    broken.model.model.norm.register_forward_hook(lambda m, _a, out: out * float("nan") if m.training else None)
    for method in ("unified_lora", "per_persona_lora"):
        spec = build_spec(method, {"num_epochs": 1, "max_length": 64, "max_test_dialogues": 1, "max_new_tokens": 2},
                          base_model="tiny-qwen2", device="cpu")
        reporter = CollectingReporter()
        with pytest.raises(Exception, match="loss became nan at step 1"):
            run_job(spec, workspace, reporter, base=broken)
        run_id = reporter.of_kind("failed")[0].run_id
        with RunStore(workspace.db_path) as store:
            run = store.get_run(run_id)
            assert run.status == "failed" and "step 1" in run.error and "learning_rate" in run.error
            assert store.artefacts(run_id) == [] and store.metrics(run_id, subset="all") == {}
        assert not (workspace.run_dir(run_id) / "adapters").exists()



def test_a_model_broken_from_the_start_fails_before_training_and_saves_no_adapter(workspace, tiny_base):
    broken = copy.copy(tiny_base)
    broken.model = copy.deepcopy(tiny_base.model)
    with torch.no_grad():
        broken.model.model.norm.weight.fill_(float("nan"))
    spec = build_spec("unified_lora", {"num_epochs": 1, "max_length": 64, "max_test_dialogues": 1, "max_new_tokens": 2},
                      base_model="tiny-qwen2", device="cpu")
    reporter = CollectingReporter()
    with pytest.raises(Exception, match="before any training the loss on the first .* examples is nan"):
        run_job(spec, workspace, reporter, base=broken)
    assert reporter.of_kind("step") == []
    run_id = reporter.of_kind("failed")[0].run_id
    with RunStore(workspace.db_path) as store:
        run = store.get_run(run_id)
        assert run.status == "failed" and "--dtype float32" in run.error
        assert store.artefacts(run_id) == []
    assert not (workspace.run_dir(run_id) / "adapters").exists()

def test_an_adapter_with_nan_weights_is_never_written(tmp_path):
    from shpers_core.training.adapters import AdapterError, save_lora_adapter

    weights = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.full((2, 8), float("nan")),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(8, 2)}
    with pytest.raises(AdapterError, match="NaN or infinite"):
        save_lora_adapter(tmp_path / "a", weights, rank=2, lora_alpha=4, target_modules=["q_proj"], base_model="m")
    assert not (tmp_path / "a").exists() and not list(tmp_path.iterdir())
