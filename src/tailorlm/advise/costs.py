"""What a rung costs: training compute, GPU-hours and money; inference per 1,000 queries; the breakeven.

`tailor costs` prints these for any size and method, and `tailor advise` attaches them to its advice.
The arithmetic of FLOPs lives in `tailorlm.train.scaling` (6·N·D, LoRA, Chinchilla); this module
turns FLOPs into hours at a stated MFU on a GPU whose peak comes from its datasheet, and hours and
tokens into money from the config's price table. No price is ever guessed: a missing one leaves the
money figure `None` with a `reason` naming the key to set.

    >>> est = training_estimate(135e6, 2e6, gpu="A100", mfu=0.4, prices={"A100-80GB": 2.0}, trainable_params=4.9e6)
    >>> f"{est['flops']:.4g}", round(est["gpu_hours"], 4), est["cost"]["reason"]  # (4·135e6 + 2·4.9e6)·2e6
    ('1.1e+15', 0.0024, '0.002447 GPU-hours at 2.0/h (A100-80GB)')
"""

import math
import re
from typing import NamedTuple

from tailorlm.errors import TailorError
from tailorlm.train.scaling import chinchilla_loss, chinchilla_tokens, compute_optimal, training_flops


class Gpu(NamedTuple):
    name: str
    peak_bf16_flops: float  # dense (no structured sparsity), per second
    memory_gb: int
    source: str


# Peak dense BF16 tensor throughput from each vendor datasheet. Datasheets print the sparse figure
# first ("1,979 TFLOPS*" for H100 SXM); dense is half of it. GPUs without BF16 (V100, T4) are left out.
GPUS = {g.name: g for g in [
    Gpu("A100", 312e12, 80, "NVIDIA A100 Tensor Core GPU datasheet: BF16 Tensor Core 312 TFLOPS (624 with sparsity)"),
    Gpu("H100-SXM", 989e12, 80, "NVIDIA H100 Tensor Core GPU datasheet, SXM: BF16 Tensor Core 1,979 TFLOPS with sparsity"),
    Gpu("H100-PCIe", 756e12, 80, "NVIDIA H100 Tensor Core GPU datasheet, PCIe: BF16 Tensor Core 1,513 TFLOPS with sparsity"),
    Gpu("H200", 989e12, 141, "NVIDIA H200 Tensor Core GPU datasheet, SXM: BF16 Tensor Core 1,979 TFLOPS with sparsity"),
    Gpu("L4", 121e12, 24, "NVIDIA L4 Tensor Core GPU datasheet: BF16 Tensor Core 242 TFLOPS with sparsity"),
    Gpu("L40S", 362e12, 48, "NVIDIA L40S datasheet: BF16 Tensor Core 362.05 TFLOPS (733 with sparsity)"),
    Gpu("A10G", 125e12, 24, "NVIDIA A10 Tensor Core GPU datasheet: BF16 Tensor Core 125 TFLOPS (250 with sparsity); "
                            "AWS's A10G is its variant and has no separate published figure"),
    Gpu("RTX4090", 165.2e12, 24, "NVIDIA Ada Lovelace architecture whitepaper: GeForce RTX 4090 peak BF16 Tensor "
                                 "165.2 TFLOPS with FP32 accumulate (330.4 with sparsity)"),
    Gpu("MI300X", 1307.4e12, 192, "AMD Instinct MI300X datasheet: peak BF16 1307.4 TFLOPS (2614.9 with sparsity)"),
]}
ALIASES = {"H100": "H100-SXM"}  # a bare "H100" means the SXM part, as in most clouds' listings

HOURS_PER_MONTH = 730  # 365 · 24 / 12


def _key(name: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", name.upper())


def find_gpu(name: str) -> Gpu:
    """The table entry a user's GPU name means: exact (ignoring case and punctuation), an alias,
    or the longest table name it starts with ("A100-80GB" is an A100).

    >>> find_gpu("a100-80gb").name, find_gpu("H100").name
    ('A100', 'H100-SXM')
    """
    key = _key(name)
    for alias, target in ALIASES.items():
        if key == _key(alias):
            return GPUS[target]
    matches = [g for g in GPUS.values() if key.startswith(_key(g.name))]
    if not matches:
        raise TailorError(f"unknown GPU {name!r}; known: {', '.join(GPUS)} (or give --peak-tflops from its datasheet)")
    return max(matches, key=lambda g: len(_key(g.name)))


def gpu_price(name: str, gpu_hour: dict[str, float]) -> tuple[float | None, str]:
    """(price per GPU-hour, which key or why none) from `prices.gpu_hour`; never a guess."""
    if name in gpu_hour:
        return gpu_hour[name], name
    try:
        want = find_gpu(name).name
    except TailorError:
        return None, f"no price for {name} in prices.gpu_hour"
    keys = []
    for key in gpu_hour:
        try:
            if find_gpu(key).name == want:
                keys.append(key)
        except TailorError:
            continue
    if len(keys) == 1:
        return gpu_hour[keys[0]], keys[0]
    if keys:
        return None, f"several prices match {name}: {', '.join(keys)}; name one of them"
    return None, f"no price for {want} in prices.gpu_hour"


def parse_amount(text: str | float | int) -> float:
    """'135M' -> 1.35e8, '2k' -> 2000, '1e21' -> 1e21, '1.5T' -> 1.5e12.

    >>> parse_amount("135M"), parse_amount("10B"), parse_amount("1e21")
    (135000000.0, 10000000000.0, 1e+21)
    """
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBtT]?)\s*", text)
    if not m:
        raise TailorError(f"cannot read {text!r} as an amount; write e.g. 135M, 2k, 10B, 1.5T or 1e21")
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2).lower()]


def _money(amount_of: str, units: float, price: float | None, why: str) -> dict:
    if price is None:
        return {"amount": None, "reason": why}
    return {"amount": units * price, "reason": f"{units:.4g} {amount_of} at {price}/h ({why})"}


def training_estimate(n_params: float, n_tokens: float, gpu: str | None = None, mfu: float = 0.4,
                      prices: dict | None = None, method: str = "lora", trainable_params: float | None = None,
                      epochs: float = 1.0, peak_flops: float | None = None, measured_tokens_per_s: float | None = None) -> dict:
    """FLOPs, GPU-hours and money to train `n_params` on `n_tokens` (times `epochs`).

    `method` is lora, qlora, full or pretrain. LoRA and QLoRA use (4·N + 2·N_t)·D (see
    `training_flops`); without `trainable_params` that is only a lower bound (4·N·D), flagged as
    such. QLoRA's de-quantisation work is not counted. `prices` is `prices.gpu_hour`.
    `measured_tokens_per_s` (from a finished run on this machine) adds the wall-clock time here.
    """
    if method not in ("lora", "qlora", "full", "pretrain"):
        raise TailorError(f"unknown method {method!r}; use lora, qlora, full or pretrain")
    if not 0 < mfu <= 1:
        raise TailorError(f"mfu must be in (0, 1], got {mfu}")
    tokens = n_tokens * epochs
    notes = []
    if method in ("lora", "qlora"):
        lower_bound = trainable_params is None
        flops = training_flops(n_params, tokens, trainable_params=trainable_params or 0)
        if lower_bound:
            notes.append("trainable (adapter) parameters unknown: 4·N·D is a lower bound; the adapter adds 2·N_t·D")
    else:
        lower_bound = False
        flops = training_flops(n_params, tokens)
    out = {"method": method, "n_params": n_params, "trainable_params": trainable_params, "n_tokens": tokens,
           "epochs": epochs, "flops": flops, "flops_is_lower_bound": lower_bound, "mfu": mfu, "gpu": None,
           "gpu_hours": None, "cost": None, "notes": notes}
    if gpu or peak_flops:
        found = find_gpu(gpu) if gpu and not peak_flops else None
        peak = peak_flops or found.peak_bf16_flops
        hours = flops / (peak * mfu) / 3600
        price, why = gpu_price(gpu, prices or {}) if gpu else (None, "no GPU named to price")
        out.update(gpu={"name": gpu, "peak_flops": peak, "source": found.source if found else "given (--peak-tflops)"},
                   gpu_hours=hours, cost=_money("GPU-hours", hours, price, why))
    if measured_tokens_per_s:
        out["hours_here"] = tokens / measured_tokens_per_s / 3600
        out["notes"].append(f"at the {measured_tokens_per_s:.0f} tokens/s a finished run measured on this machine")
    return out


def lora_params(model, r: int) -> int:
    """Parameters LoRA of rank `r` adds on every linear layer but the output head ("all-linear" in
    peft): r·(d_in + d_out) per layer. `model` may live on the meta device.

    >>> import torch.nn as nn
    >>> lora_params(nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 5)), r=2)
    110
    """
    import torch.nn as nn

    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return sum(r * (m.in_features + m.out_features) for m in model.modules()
               if isinstance(m, nn.Linear) and m is not out)


def model_size(model_path: str, lora_r: int, trust_remote_code: bool = False) -> dict:
    """{n_params, trainable_params} of a local model folder, counted on the meta device (no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return {"n_params": sum(p.numel() for p in model.parameters()), "trainable_params": lora_params(model, lora_r),
            "lora_r": lora_r}


def per_query_cost(prices, queries_per_s: float | None = None, prompt_tokens: float | None = None,
                   completion_tokens: float | None = None, serve_gpu: str | None = None) -> dict:
    """Cost per 1,000 queries, self-hosted (an hourly price over measured throughput, at full load)
    and on a hosted API (configured per-token prices). `prices` is the config's `prices` section;
    the machine's price is `prices.gpu_hour[serve_gpu]`, or `prices.cpu_hour`. Each side is `None`
    with a reason when a price or a measurement is missing.
    """
    from tailorlm.eval.metrics import cost_per_1k

    key, (price, why) = ("gpu_hour", gpu_price(serve_gpu, prices.gpu_hour)) if serve_gpu else (
        "cpu_hour", (prices.cpu_hour, "no prices.cpu_hour"))
    if price is None:
        self_hosted = {"usd_per_1k": None, "basis": None, "reason": why}
    elif not queries_per_s:
        self_hosted = {"usd_per_1k": None, "basis": None,
                       "reason": "no measured throughput (run `tailor ladder`, or pass --queries-per-s)"}
    else:
        self_hosted = cost_per_1k(0, 0, 1000, {key: price, "seconds": 1000 / queries_per_s})
    self_hosted["price_per_hour"] = price
    if prompt_tokens is None or completion_tokens is None:
        api = {"usd_per_1k": None, "basis": None, "reason": "tokens per query unknown (run `tailor ladder`, or pass --prompt-tokens "
                                             "and --completion-tokens)"}
    else:
        api = cost_per_1k(prompt_tokens * 1000, completion_tokens * 1000, 1000,
                          {"api_input_per_1m": prices.api_input_per_1m, "api_output_per_1m": prices.api_output_per_1m})
    return {"self_hosted": self_hosted, "api": api, "queries_per_s": queries_per_s,
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}


def prompt_search_cost(prices, budget_calls: int, measured: dict | None = None) -> dict:
    """One-off cost of a `prompt_opt` search: at most `budget_calls` model calls, each shaped like a
    few-shot query (an instruction, demonstrations, a validation question), so priced at the measured
    few-shot rung's cost per query (`measured`, from `advise.facts.measured_serving`).

    This is why the advisor places prompt_opt between few-shot and RAG: it serves at a few-shot prompt's
    cost per query, and adds only this bounded search before it, no training and no retrieval per query.

    >>> from tailorlm.config import PricesConfig
    >>> est = prompt_search_cost(PricesConfig(cpu_hour=0.05), 400, {"queries_per_s": 2.0, "prompt_tokens": 300,
    ...                          "completion_tokens": 1})
    >>> est["seconds"], round(est["self_hosted"]["amount"], 6)  # 400 calls at 0.5 s, at $0.05 an hour
    (200.0, 0.002778)
    """
    measured = measured or {}
    per = per_query_cost(prices, measured.get("queries_per_s"), measured.get("prompt_tokens"),
                         measured.get("completion_tokens"))
    out = {"calls": budget_calls, "basis": f"{budget_calls} calls priced as the measured few-shot rung "
                                           f"{measured.get('rung') or '(none measured)'}"}
    for side in ("self_hosted", "api"):
        per_1k = per[side]["usd_per_1k"]
        out[side] = {"amount": None if per_1k is None else per_1k * budget_calls / 1000,
                     "reason": per[side].get("reason")}
    if measured.get("queries_per_s"):
        out["seconds"] = budget_calls / measured["queries_per_s"]
    return out


def breakeven(hourly_price: float | None, queries_per_s: float | None, api_per_1k: float | None,
              queries_per_day: float | None = None, training_cost: float | None = None) -> dict:
    """When one always-on self-hosted machine gets cheaper than paying a hosted API per query.

    A machine costs `hourly_price`·24 a day whatever the load and serves at most
    `queries_per_s`·86,400 queries a day; the API costs `api_per_1k` per 1,000. Breakeven is the
    daily volume where the two are equal. If it exceeds what one machine serves, more machines do
    not help (each full machine is still dearer per query than the API): there is no breakeven.
    With `queries_per_day` and a one-off `training_cost`, also the days until training pays back.

    >>> breakeven(1.0, 10, 0.5)["queries_per_day"]  # 24 / (0.5 / 1000)
    48000.0
    """
    if hourly_price is None or not queries_per_s or api_per_1k is None:
        return {"queries_per_day": None, "reason": "needs an hourly price, a measured throughput and an API price"}
    if api_per_1k <= 0:
        return {"queries_per_day": None, "reason": "the API price is zero: self-hosting never breaks even"}
    daily = hourly_price * 24
    capacity = queries_per_s * 86400
    volume = daily / (api_per_1k / 1000)
    out = {"queries_per_day": volume, "machine_per_day": daily, "capacity_per_day": capacity,
           "reason": f"one machine at {hourly_price}/h costs {daily:.4g} a day = {volume:.4g} API queries"}
    if volume > capacity:
        out.update(queries_per_day=None, reason=f"never: at full load ({capacity:.4g} queries/day) a machine costs "
                                                f"{daily / capacity * 1000:.4g} per 1k, the API {api_per_1k:.4g}")
        return out
    if queries_per_day:
        machines = max(1, math.ceil(queries_per_day / capacity))
        saving = queries_per_day * api_per_1k / 1000 - machines * daily
        out.update(at_volume={"queries_per_day": queries_per_day, "machines": machines,
                              "self_hosted_per_month": machines * hourly_price * HOURS_PER_MONTH,
                              "api_per_month": queries_per_day * api_per_1k / 1000 * 365 / 12,
                              "saving_per_day": saving})
        if training_cost is not None:
            out["at_volume"]["payback_days"] = training_cost / saving if saving > 0 else None
    return out


def chinchilla_plan(flops: float, gpu: str | None = None, mfu: float = 0.4, prices: dict | None = None,
                    peak_flops: float | None = None) -> dict:
    """Compute-optimal pre-training for a FLOP budget (Hoffmann et al. 2022): N and D by the
    ~20 tokens-per-parameter rule and by Approach 3's fitted law, with the predicted loss, and the
    GPU-hours and money for the budget on a GPU.

    >>> plan = chinchilla_plan(1.2e20)
    >>> round(plan["tokens_per_param"]["n_params"] / 1e9, 2), round(plan["tokens_per_param"]["n_tokens"] / 1e9, 1)
    (1.0, 20.0)
    """
    out = {"flops": flops}
    for method in ("tokens_per_param", "parametric"):
        n, d = compute_optimal(flops, method)
        out[method] = {"n_params": n, "n_tokens": d, "tokens_per_param": d / n, "predicted_loss": chinchilla_loss(n, d)}
    n = out["tokens_per_param"]["n_params"]
    out["training"] = training_estimate(n, chinchilla_tokens(n), gpu=gpu, mfu=mfu, prices=prices, method="pretrain",
                                        peak_flops=peak_flops)
    return out


def pretrain_for_tokens(unique_tokens: float, gpu: str | None, mfu: float, prices: dict | None) -> dict:
    """Training a compute-optimal model on all of `unique_tokens` once: N = D / 20, C = 6·N·D."""
    n = unique_tokens / chinchilla_tokens(1)
    return training_estimate(n, unique_tokens, gpu=gpu, mfu=mfu, prices=prices, method="pretrain")


def costs_report(prices, method: str = "lora", n_params: float | None = None, n_tokens: float | None = None,
                 gpu: str | None = None, mfu: float = 0.4, trainable_params: float | None = None,
                 model_path: str | None = None, lora_r: int = 16, epochs: float = 1.0, peak_tflops: float | None = None,
                 queries_per_day: float | None = None, queries_per_s: float | None = None,
                 prompt_tokens: float | None = None, completion_tokens: float | None = None,
                 serve_gpu: str | None = None, pretrain_flops: float | None = None, prompts: float | None = None,
                 num_generations: int = 4) -> dict:
    """`tailor costs`: training, inference, breakeven and Chinchilla sizing for whatever is given.

    `method="grpo"` prices a GRPO run instead (`grpo_estimate`): `prompts` prompts of `prompt_tokens`,
    `num_generations` answers of `completion_tokens` each; the inference figures then need
    --queries-per-s to be asked for.

    `prices` is the config's `prices` section (`PricesConfig()` outside a project: no prices, so
    every money figure says what is missing).

    >>> from tailorlm.config import PricesConfig
    >>> r = costs_report(PricesConfig(gpu_hour={"A100": 2.0}), n_params=1e9, n_tokens=20e9, gpu="A100", method="full")
    >>> f"{r['training']['flops']:.3g}", round(r["training"]["gpu_hours"], 1)
    ('1.2e+20', 267.1)
    """
    peak = peak_tflops * 1e12 if peak_tflops else None
    out = {"kind": "costs", "currency": prices.currency, "training": None, "chinchilla": None, "inference": None,
           "breakeven": None}
    if model_path:
        size = model_size(model_path, lora_r)
        n_params = n_params or size["n_params"]
        if method in ("lora", "qlora", "grpo") and trainable_params is None:
            trainable_params = size["trainable_params"]
    if method == "grpo":
        if not (n_params and prompts and prompt_tokens and completion_tokens):
            raise TailorError("a grpo estimate needs the model size (--params or --model), --prompts, --prompt-tokens "
                              "and --completion-tokens (per sampled answer)")
        out["training"] = grpo_estimate(n_params, prompts, prompt_tokens, completion_tokens, num_generations, epochs,
                                        trainable_params, gpu, mfu, prices.gpu_hour, peak)
    elif n_params or n_tokens:
        if not (n_params and n_tokens):
            raise TailorError("a training estimate needs both the model size (--params or --model) and --tokens")
        out["training"] = training_estimate(n_params, n_tokens, gpu=gpu, mfu=mfu, prices=prices.gpu_hour, method=method,
                                            trainable_params=trainable_params, epochs=epochs, peak_flops=peak)
    if pretrain_flops:
        out["chinchilla"] = chinchilla_plan(pretrain_flops, gpu=gpu, mfu=mfu, prices=prices.gpu_hour, peak_flops=peak)
    asked = (queries_per_s, queries_per_day) if method == "grpo" else (queries_per_s, prompt_tokens, completion_tokens,
                                                                        queries_per_day)
    if any(x is not None for x in asked):
        inference = per_query_cost(prices, queries_per_s, prompt_tokens, completion_tokens, serve_gpu)
        training_cost = ((out["training"] or {}).get("cost") or {}).get("amount")
        out["inference"] = inference
        out["breakeven"] = breakeven(inference["self_hosted"]["price_per_hour"], queries_per_s,
                                     inference["api"]["usd_per_1k"], queries_per_day, training_cost)
    if not any(out[k] for k in ("training", "chinchilla", "inference")):
        raise TailorError("nothing to estimate: give --params (or --model) and --tokens for training, --pretrain-flops "
                          "for Chinchilla sizing, or --queries-per-s / --prompt-tokens / --completion-tokens for inference")
    return out


def grpo_estimate(n_params: float, prompts: float, prompt_tokens: float, completion_tokens: float,
                  num_generations: int = 4, epochs: float = 1.0, trainable_params: float | None = None,
                  gpu: str | None = None, mfu: float = 0.4, prices: dict | None = None, peak_flops: float | None = None,
                  measured_tokens_per_s: float | None = None) -> dict:
    """FLOPs, GPU-hours and money of a GRPO run (`tailor train grpo`), counting the sampled tokens.

    Per prompt and pass: sampling prefills the prompt once and decodes G answers (2·N per token,
    forward only); the policy pass over the prompt (once, the group's shared prefix) and the G answers
    costs (4·N + 2·N_t) per token, and the reference pass 2·N. Decoding runs far below a training
    MFU on any GPU (one token per row per step is memory-bound), so at one `mfu` the generation time
    is a lower bound; `measured_tokens_per_s` (sampled tokens/s of a finished grpo run here) gives
    the time on this machine instead.

    >>> e = grpo_estimate(135e6, 100, 80, 8, num_generations=4, trainable_params=4.9e6)
    >>> e["sampled_tokens"], f"{e['generation_flops']:.3g}", round(e["generation_share"], 2)
    (3200.0, '3.02e+12', 0.25)
    """
    if num_generations < 2:
        raise TailorError("grpo samples at least 2 answers per prompt (--num-generations)")
    passes = prompts * epochs
    sampled = passes * num_generations * completion_tokens
    scored = passes * (prompt_tokens + num_generations * completion_tokens)  # the prompt once per group
    generation = 2 * n_params * (passes * prompt_tokens + sampled)
    policy = training_flops(n_params, scored, trainable_params=trainable_params or 0)
    reference = 2 * n_params * scored
    flops = generation + policy + reference
    out = training_estimate(n_params, scored, gpu=gpu, mfu=mfu, prices=prices, method="lora",
                            trainable_params=trainable_params, peak_flops=peak_flops)
    if out["gpu_hours"] is not None:
        out["gpu_hours"] *= flops / out["flops"]
        price, why = gpu_price(gpu, prices or {}) if gpu else (None, "no GPU named to price")
        out["cost"] = _money("GPU-hours", out["gpu_hours"], price, why)
    out.update(method="grpo", flops=flops, n_tokens=scored, epochs=epochs, prompts=prompts,
               num_generations=num_generations, sampled_tokens=sampled, generation_flops=generation,
               policy_flops=policy, reference_flops=reference, generation_share=generation / flops)
    out["notes"].append("decoding runs below the training MFU: the generation share of the time is a lower bound")
    if measured_tokens_per_s:
        out["hours_here"] = sampled / measured_tokens_per_s / 3600
        out["notes"].append(f"at the {measured_tokens_per_s:.0f} sampled tokens/s a finished grpo run measured here")
    return out
