"""Cost formulas against hand-computed values, Chinchilla sizing against Hoffmann et al. 2022's
Table 3, the GPU table against its datasheets, and `tailor costs`."""

import json

import pytest

from tailorlm.advise.costs import (
    breakeven,
    chinchilla_plan,
    costs_report,
    find_gpu,
    gpu_price,
    lora_params,
    model_size,
    parse_amount,
    per_query_cost,
    pretrain_for_tokens,
    training_estimate,
)
from tailorlm.config import PricesConfig
from tailorlm.errors import TailorError
from tests.test_scaling import TABLE_3


@pytest.mark.parametrize("name, tflops", [("A100", 312), ("a100-80gb", 312), ("H100", 989), ("H100 SXM", 989),
                                          ("H100-PCIe", 756), ("L4", 121), ("A10G", 125), ("RTX 4090", 165.2),
                                          ("L40S", 362), ("H200", 989), ("MI300X", 1307.4)])
def test_gpu_table_holds_the_dense_bf16_datasheet_peaks(name, tflops):
    gpu = find_gpu(name)
    assert gpu.peak_bf16_flops == pytest.approx(tflops * 1e12)
    assert "datasheet" in gpu.source or "whitepaper" in gpu.source


def test_unknown_gpu_is_an_error_that_names_the_table():
    with pytest.raises(TailorError, match="unknown GPU 'V100'.*A100"):
        find_gpu("V100")


def test_gpu_prices_come_only_from_the_table_in_the_config():
    assert gpu_price("A100", {"A100-80GB": 1.5}) == (1.5, "A100-80GB")
    assert gpu_price("A100-80GB", {"A100-80GB": 1.5, "A100-40GB": 1.1}) == (1.5, "A100-80GB")
    price, why = gpu_price("A100", {"A100-80GB": 1.5, "A100-40GB": 1.1})
    assert price is None and "several prices match" in why
    assert gpu_price("H100", {"A100": 1.0}) == (None, "no price for H100-SXM in prices.gpu_hour")
    assert gpu_price("TPUv5", {}) == (None, "no price for TPUv5 in prices.gpu_hour")


def test_parse_amount():
    assert parse_amount("135M") == 135e6
    assert parse_amount("2k") == 2000
    assert parse_amount("1.5T") == 1.5e12
    assert parse_amount("1e21") == 1e21
    with pytest.raises(TailorError, match="cannot read"):
        parse_amount("lots")


def test_full_training_hours_and_money_by_hand():
    # 6·1e9·20e9 = 1.2e20 FLOPs; at 40% of 312 TFLOP/s: 1.2e20 / 1.248e14 s = 267.09 h; at 2.0/h: 534.19
    est = training_estimate(1e9, 20e9, gpu="A100", mfu=0.4, prices={"A100": 2.0}, method="full")
    assert est["flops"] == pytest.approx(1.2e20)
    assert est["gpu_hours"] == pytest.approx(1.2e20 / (312e12 * 0.4) / 3600)
    assert est["gpu_hours"] == pytest.approx(267.094, rel=1e-5)
    assert est["cost"]["amount"] == pytest.approx(534.188, rel=1e-5)
    assert not est["flops_is_lower_bound"]


def test_lora_training_counts_weight_gradients_for_the_adapter_only():
    # (4·135e6 + 2·2e6)·2e6 = 1.088e15 FLOPs; on an H100 at 50%: 1.088e15 / 4.945e14 s
    est = training_estimate(135e6, 2e6, gpu="H100", mfu=0.5, prices={}, trainable_params=2e6, method="lora")
    assert est["flops"] == pytest.approx(1.088e15)
    assert est["gpu_hours"] == pytest.approx(1.088e15 / (989e12 * 0.5) / 3600)
    assert est["cost"] == {"amount": None, "reason": "no price for H100-SXM in prices.gpu_hour"}
    # two epochs double the tokens and the FLOPs
    assert training_estimate(135e6, 2e6, trainable_params=2e6, epochs=2)["flops"] == pytest.approx(2 * 1.088e15)


def test_lora_without_adapter_size_is_a_flagged_lower_bound():
    est = training_estimate(135e6, 2e6, method="lora")
    assert est["flops"] == pytest.approx(4 * 135e6 * 2e6)
    assert est["flops_is_lower_bound"] and "lower bound" in est["notes"][0]
    assert est["gpu_hours"] is None  # no GPU named: FLOPs only


def test_measured_speed_gives_hours_on_this_machine_and_peak_override_prices_any_gpu():
    est = training_estimate(135e6, 720_000, trainable_params=5e6, measured_tokens_per_s=200)
    assert est["hours_here"] == pytest.approx(1.0)  # 720k tokens at 200 tokens/s
    est = training_estimate(1e9, 1e9, gpu="MyChip", peak_flops=100e12, mfu=0.5, prices={"MyChip": 3.0}, method="full")
    assert est["gpu_hours"] == pytest.approx(6e18 / 50e12 / 3600)
    assert est["cost"]["amount"] == pytest.approx(est["gpu_hours"] * 3.0)
    with pytest.raises(TailorError, match="mfu"):
        training_estimate(1e9, 1e9, mfu=1.5)


def test_lora_params_equal_what_peft_trains(tiny_model):
    import copy

    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(tiny_model), LoraConfig(r=4, target_modules="all-linear"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora_params(tiny_model, 4) == trainable


def test_model_size_counts_a_model_folder_without_loading_weights(tiny_model, tiny_model_dir):
    size = model_size(str(tiny_model_dir), lora_r=8)
    assert size["n_params"] == sum(p.numel() for p in tiny_model.parameters())
    assert size["trainable_params"] == lora_params(tiny_model, 8)


def test_inference_cost_per_1k_self_hosted_and_api_by_hand():
    prices = PricesConfig(cpu_hour=0.36, api_input_per_1m=0.5, api_output_per_1m=1.5, gpu_hour={"L4": 0.8})
    cost = per_query_cost(prices, queries_per_s=2, prompt_tokens=500, completion_tokens=100)
    # 1000 queries at 2/s = 500 s = 0.1389 h at 0.36/h = 0.05
    assert cost["self_hosted"]["usd_per_1k"] == pytest.approx(0.05)
    # 1000·(500·0.5 + 100·1.5) / 1e6 = 0.4
    assert cost["api"]["usd_per_1k"] == pytest.approx(0.4)
    on_gpu = per_query_cost(prices, queries_per_s=20, serve_gpu="L4")
    assert on_gpu["self_hosted"]["usd_per_1k"] == pytest.approx(50 / 3600 * 0.8)
    assert on_gpu["self_hosted"]["basis"] == "gpu_hour"


def test_missing_prices_and_measurements_are_named_not_guessed():
    cost = per_query_cost(PricesConfig(), queries_per_s=2, prompt_tokens=500, completion_tokens=100)
    assert cost["self_hosted"]["usd_per_1k"] is None and "cpu_hour" in cost["self_hosted"]["reason"]
    assert cost["api"]["usd_per_1k"] is None and "no price configured" in cost["api"]["reason"]
    cost = per_query_cost(PricesConfig(cpu_hour=1.0))
    assert "no measured throughput" in cost["self_hosted"]["reason"]
    assert "tokens per query unknown" in cost["api"]["reason"]


def test_breakeven_by_hand():
    # one machine: 1.0/h · 24 = 24 a day; the API: 0.5 per 1k -> 24 / 0.0005 = 48,000 queries a day
    be = breakeven(1.0, 10, 0.5, queries_per_day=100_000, training_cost=260)
    assert be["queries_per_day"] == pytest.approx(48_000)
    assert be["capacity_per_day"] == pytest.approx(864_000)
    v = be["at_volume"]
    assert v["machines"] == 1
    assert v["saving_per_day"] == pytest.approx(100_000 * 0.5 / 1000 - 24)  # 26
    assert v["payback_days"] == pytest.approx(10)
    assert v["self_hosted_per_month"] == pytest.approx(730)
    assert v["api_per_month"] == pytest.approx(50 * 365 / 12)


def test_no_breakeven_when_a_full_machine_is_dearer_per_query_than_the_api():
    be = breakeven(10.0, 0.1, 0.5)  # capacity 8,640/day; 240 a day would buy 480,000 API queries
    assert be["queries_per_day"] is None and be["reason"].startswith("never")
    assert breakeven(None, 10, 0.5)["queries_per_day"] is None
    assert breakeven(1.0, 10, 0.0)["queries_per_day"] is None


@pytest.mark.parametrize("n, flops, tokens", TABLE_3)
def test_chinchilla_plan_reproduces_table_3(n, flops, tokens):
    plan = chinchilla_plan(flops)
    assert plan["tokens_per_param"]["n_params"] == pytest.approx(n, rel=0.05)
    assert plan["tokens_per_param"]["n_tokens"] == pytest.approx(tokens, rel=0.08)
    assert plan["tokens_per_param"]["tokens_per_param"] == pytest.approx(20)
    assert plan["training"]["flops"] == pytest.approx(flops)
    # Approach 3's fit spends more of the budget on data: more tokens per parameter
    assert plan["parametric"]["tokens_per_param"] > 20


def test_chinchilla_plan_prices_the_budget():
    plan = chinchilla_plan(1e21, gpu="H100", mfu=0.4, prices={"H100-SXM": 3.0})
    hours = 1e21 / (989e12 * 0.4) / 3600
    assert plan["training"]["gpu_hours"] == pytest.approx(hours)
    assert plan["training"]["cost"]["amount"] == pytest.approx(3.0 * hours)


def test_pretraining_on_a_corpus_is_twenty_tokens_per_parameter():
    est = pretrain_for_tokens(10e9, None, 0.4, {})
    assert est["n_params"] == pytest.approx(5e8)
    assert est["flops"] == pytest.approx(6 * 5e8 * 10e9)


def test_costs_report_needs_something_to_estimate():
    with pytest.raises(TailorError, match="nothing to estimate"):
        costs_report(PricesConfig())
    with pytest.raises(TailorError, match="needs both"):
        costs_report(PricesConfig(), n_params=1e9)


def _priced_project(cli, tmp_path):
    cli("init", "acme")
    cfg = tmp_path / "acme" / "tailor.yaml"
    text = cfg.read_text().replace("  gpu_hour: {}", "  gpu_hour: {A100-80GB: 2.0}\n  cpu_hour: 0.36\n"
                                   "  api_input_per_1m: 0.5\n  api_output_per_1m: 1.5")
    cfg.write_text(text)
    return tmp_path / "acme"


def test_cli_costs_in_a_project_uses_its_price_table(cli, tmp_path):
    root = _priced_project(cli, tmp_path)
    out = cli("costs", "--method", "lora", "--params", "135M", "--tokens", "2M", "--trainable-params", "2M", "--gpu", "A100",
              "--mfu", "0.4", "--queries-per-day", "5000", "--queries-per-s", "2", "--prompt-tokens", "500",
              "--completion-tokens", "100", "-p", root, "--json")
    assert out.exit_code == 0, out.output
    r = json.loads(out.output)
    hours = 1.088e15 / (312e12 * 0.4) / 3600
    assert r["training"]["gpu_hours"] == pytest.approx(hours)
    assert r["training"]["cost"]["amount"] == pytest.approx(2.0 * hours)
    assert r["inference"]["self_hosted"]["usd_per_1k"] == pytest.approx(0.05)
    assert r["inference"]["api"]["usd_per_1k"] == pytest.approx(0.4)
    assert r["breakeven"]["queries_per_day"] == pytest.approx(0.36 * 24 / 0.0004)
    assert (root / ".tailor" / "reports" / "costs.html").read_text().startswith("<!doctype html>")
    text = cli("costs", "--pretrain-flops", "1e21", "--gpu", "A100", "-p", root)
    assert text.exit_code == 0 and "Chinchilla-optimal" in text.output


def test_cli_costs_outside_a_project_says_prices_are_missing(cli):
    out = cli("costs", "--params", "1B", "--tokens", "20B", "--method", "full", "--gpu", "A100", "--json")
    r = json.loads(out.output)
    assert r["training"]["flops"] == pytest.approx(1.2e20)
    assert r["training"]["cost"] == {"amount": None, "reason": "no price for A100 in prices.gpu_hour"}
    gpus = json.loads(cli("costs", "--list-gpus", "--json").output)["gpus"]
    assert {g["name"] for g in gpus} >= {"A100", "H100-SXM", "L4", "A10G", "RTX4090"}
    assert cli("costs").exit_code == 2
