from shpers_core.bench import PHASES, TARGETS, run_bench
from shpers_core.cli.bench_cmd import format_result
from shpers_core.cli.main import main
from shpers_core.models import pick_dtype


def test_bench_measures_both_dtypes_against_the_roofline_on_the_tiny_model(shpers_cache):
    result = run_bench("tiny-qwen2", personas=3, train_dialogues=2, repeats=2, device="cpu",
                       max_new_tokens=4, dtypes=("float32", "bfloat16"))
    assert list(result.dtypes) == ["float32", "bfloat16"]
    main = result.main
    assert all(len(main.seconds[p]) == 2 for p in PHASES)
    assert "sequential" not in result.dtypes["float32"].seconds  # the slow phases run in one dtype only
    assert all(r.matmul_flops > 1e8 and r.train_tokens > 0 and r.eval_turns > 3 for r in result.dtypes.values())
    assert result.flops_per_token > 0 and 0 < result.roofline_share("bfloat16") < 1
    assert result.bf16_vs_fp32 > 0 and result.eval_vs_today > 0 and result.mixed_vs_sequential > 0
    # The main dtype's batched training is profiled once: shares of real operator time, and the
    # matrix products' own FLOP rate (the profiler's count), so the bench can say what stops it.
    breakdown = main.training_breakdown
    assert result.dtypes["float32"].training_breakdown is None
    assert abs(sum(breakdown.shares.values()) - 1) < 1e-6 and breakdown.shares["matrix products"] > 0
    assert breakdown.shares["attention"] > 0 and breakdown.matmul_flops > 1e6
    text = format_result(result)
    assert "where batched training's operator time went (profiled, bfloat16" in text and "matrix products" in text
    assert main.eval_breakdown.shares["matrix products"] > 0 and result.dtypes["float32"].eval_breakdown is None
    assert "where mixed-adapter evaluation's operator time went (profiled, bfloat16" in text
    assert f"{result.eval_batch_size} rows at once instead of 16" in format_result(result)
    for marker in ("GFLOP/s", "bf16 / float32", "% of the bfloat16 matrix-product rate", "(a)", "(b)", "(d)",
                   f"target >= {TARGETS['eval_vs_today']}x", f"target <= {TARGETS['batched_vs_unified']}x"):
        assert marker in text


def test_bench_command_prints_figures_with_targets(capsys, shpers_cache):
    code = main(["bench", "--model", "tiny-qwen2", "--personas", "2", "--train-dialogues", "1",
                 "--max-new-tokens", "3", "--device", "cpu", "--dtype", "float32"])
    out = capsys.readouterr().out
    assert code == 0
    assert "(a) batched 2 adapters / unified LoRA" in out and "not measured (one dtype)" in out
    assert f"runs here hold the model in {pick_dtype('cpu')}: " in out
    assert main(["bench", "--model", "tiny-qwen2", "--personas", "0"]) == 2


def test_operators_are_sorted_into_kinds_by_name():
    from shpers_core.step_profile import kind_of

    assert kind_of("aten::mm") == kind_of("aten::bmm") == "matrix products"
    assert kind_of("aten::_scaled_dot_product_flash_attention_for_cpu_backward") == "attention"
    assert kind_of("aten::bernoulli_") == kind_of("aten::random_") == "dropout masks"
    assert kind_of("aten::_to_copy") == "dtype casts and copies"
    assert kind_of("aten::silu") == "element-wise and other"
