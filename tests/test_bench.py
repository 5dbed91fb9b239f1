from shpers_core.bench import PHASES, run_bench
from shpers_core.cli.bench_cmd import format_result
from shpers_core.cli.main import main


def test_bench_reports_all_three_ratios_on_the_tiny_model():
    result = run_bench("tiny-qwen2", personas=3, examples_per_persona=2, repeats=2, device="cpu",
                       tokens_per_example=16, prompt_tokens=8, max_new_tokens=4)
    assert all(len(result.seconds[p]) == 2 for p in PHASES)
    assert result.train_tokens > 0
    text = format_result(result)
    for marker in ("(a)", "(b)", "(c)"):
        assert marker in text
    assert result.batched_vs_unified > 0 and result.sequential_vs_batched > 0 and result.eval_speedup > 0


def test_bench_command_prints_the_ratios(capsys):
    code = main(["bench", "--model", "tiny-qwen2", "--personas", "2", "--examples-per-persona", "1",
                 "--tokens", "12", "--prompt-tokens", "6", "--max-new-tokens", "3", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "(a) batched 2 adapters / unified LoRA" in out and "(b)" in out and "(c)" in out
    assert main(["bench", "--model", "tiny-qwen2", "--personas", "0"]) == 2
