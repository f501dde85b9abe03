"""Compute and Chinchilla sizing: how many FLOPs a run costs and what model a budget buys.

`tailor train pretrain` uses `compute_optimal` and `model_config_for` to turn a FLOP budget into a
Llama config and a token count; `tailor advise` uses `training_flops` to price a rung before anyone
trains it. Everything here is arithmetic (transformers is imported only to build a config), so it
is cheap to call from the CLI.

Sources:
- Kaplan et al. 2020, "Scaling Laws for Neural Language Models", sec. 2.1: training costs about
  6·N·D FLOPs (2·N·D forward, 4·N·D backward).
- Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (Chinchilla): about 20
  tokens per parameter (Approaches 1 and 2, Table 3), and the parametric loss of Approach 3
  (sec. 3.3, Appendix D.2).
"""

import math
from typing import Literal, NamedTuple

# Approach 3's fitted parametric loss L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, eq. 10).
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
TOKENS_PER_PARAM = 20.0

Method = Literal["tokens_per_param", "parametric"]


class ComputeOptimal(NamedTuple):
    n_params: float
    n_tokens: float


def training_flops(n_params: float, n_tokens: float, trainable_params: float | None = None) -> float:
    """FLOPs to train a dense transformer of `n_params` on `n_tokens` tokens.

    Full training: C = 6·N·D (Kaplan et al. 2020, sec. 2.1). Per token a matmul weight costs 2 FLOPs
    forward, 2 backward to get the gradient of its input and 2 more for the gradient of the weight.
    With LoRA (or any frozen base, `trainable_params` = N_t) the weight-gradient matmuls are only
    done for the trainable weights, but the activation gradients must still flow back through all
    of N: C = (4·N + 2·N_t)·D. Attention-score FLOPs (≈ 6·n_layer·seq·d per token) are left out as
    in both papers; they are small next to N when seq_len ≪ 12·d_model.

    >>> training_flops(1e9, 20e9)
    1.2e+20
    >>> training_flops(1e9, 1e6, trainable_params=1e7)  # LoRA: (4e9 + 2e7)·1e6
    4020000000000000.0
    """
    if n_params <= 0 or n_tokens < 0:
        raise ValueError(f"need n_params > 0 and n_tokens >= 0, got {n_params}, {n_tokens}")
    if trainable_params is None:
        trainable_params = n_params
    if not 0 <= trainable_params <= n_params:
        raise ValueError(f"trainable_params ({trainable_params}) must be between 0 and n_params ({n_params})")
    return (4 * n_params + 2 * trainable_params) * n_tokens


def chinchilla_tokens(n_params: float) -> float:
    """Compute-optimal training tokens for a model of `n_params`: about 20 per parameter.

    >>> chinchilla_tokens(1e9)
    20000000000.0
    """
    return TOKENS_PER_PARAM * n_params


def chinchilla_loss(n_params: float, n_tokens: float) -> float:
    """Approach 3's predicted loss (nats/token on MassiveText) for N parameters and D tokens.

    Only the shape transfers to other data and tokenizers; the absolute value does not.

    >>> round(chinchilla_loss(70e9, 1.4e12), 2)  # Chinchilla itself
    1.94
    """
    return E + A / n_params**ALPHA + B / n_tokens**BETA


def compute_optimal(flops: float, method: Method = "tokens_per_param") -> ComputeOptimal:
    """The (N_opt, D_opt) that minimise loss for a budget of `flops`, with C = 6·N·D.

    - "tokens_per_param" (default): D = 20·N, so N = sqrt(C/120). This is the rule Approaches 1
      and 2 agree on (exponents a ≈ b ≈ 0.5) and it reproduces the paper's Table 3 within ~4%.
    - "parametric": Approach 3, minimising L(N, D) along C = 6·N·D, which gives
      N = G·(C/6)^a, D = (C/6)^b / G with a = β/(α+β), b = α/(α+β), G = (αA/(βB))^(1/(α+β)).

    The default is the 20-tokens rule because the published (rounded) Approach 3 coefficients do
    not reproduce the paper's own projection: they give ~32B parameters for Gopher's 5.76e23
    FLOPs, where the paper reports ~40B, and the gap widens with scale. Besiroglu et al. 2024
    ("Chinchilla Scaling: A replication attempt") refit Approach 3 and land back near 20 tokens
    per parameter.

    >>> n, d = compute_optimal(1.2e20)
    >>> round(n / 1e9, 2), round(d / 1e9, 1)
    (1.0, 20.0)
    """
    if flops <= 0:
        raise ValueError(f"flops must be positive, got {flops}")
    if method == "tokens_per_param":
        n = math.sqrt(flops / (6 * TOKENS_PER_PARAM))
        return ComputeOptimal(n, TOKENS_PER_PARAM * n)
    if method == "parametric":
        a, b = BETA / (ALPHA + BETA), ALPHA / (ALPHA + BETA)
        g = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
        return ComputeOptimal(g * (flops / 6) ** a, (flops / 6) ** b / g)
    raise ValueError(f"unknown method {method!r}; use 'tokens_per_param' or 'parametric'")


def count_params(config) -> int:
    """Exact parameter count of `LlamaForCausalLM(config)`, computed from the config alone.

    Embeddings are included (Chinchilla counts them; Kaplan does not), once when tied.

    >>> from transformers import LlamaConfig
    >>> count_params(LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=192,
    ...     num_hidden_layers=1, num_attention_heads=2, tie_word_embeddings=True))
    59840
    """
    h, v, i = config.hidden_size, config.vocab_size, config.intermediate_size
    heads = config.num_attention_heads
    kv_heads = config.num_key_value_heads or heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    q, kv = heads * head_dim, kv_heads * head_dim
    attn = h * q + 2 * h * kv + q * h
    if getattr(config, "attention_bias", False):
        attn += q + 2 * kv + h
    mlp = 3 * h * i + (2 * i + h if getattr(config, "mlp_bias", False) else 0)
    layer = attn + mlp + 2 * h  # two RMSNorm weight vectors
    embeddings = v * h * (1 if config.tie_word_embeddings else 2)
    return embeddings + config.num_hidden_layers * layer + h  # + the final norm


def _shape(hidden: int) -> tuple[int, int, int]:
    """(heads, head_dim, intermediate) for a hidden size that is a multiple of 64."""
    # head_dim 64 is the usual choice; tiny models drop to 32 so they keep at least 2 heads.
    head_dim = 32 if hidden < 256 else 64
    # SwiGLU has 3 matrices instead of 2, so 8/3·h keeps the MLP at the 8·h² of a 4·h GELU MLP.
    intermediate = max(64, round(8 * hidden / 3 / 64) * 64)
    return hidden // head_dim, head_dim, intermediate


def model_config_for(n_params: float, vocab_size: int, max_seq_len: int = 512, tolerance: float = 0.1,
                     **overrides):
    """A Llama-style `LlamaConfig` (tied embeddings) with about `n_params` parameters.

    Every hidden size (multiple of 64) gets the layer count that best matches `n_params`; among the
    shapes within `tolerance`, the one whose aspect ratio hidden/layers is closest to 64–128 wins.
    Kaplan et al. 2020 (Fig. 5) find loss within a few percent over aspect ratios of ~20–200, so
    the parameter count matters more than the shape. When nothing is within tolerance (the
    embeddings alone are bigger than the budget), the closest shape is returned. `overrides` go
    to `LlamaConfig` (token ids, rope parameters) and must not change the shape.

    >>> config = model_config_for(10e6, vocab_size=8000)
    >>> config.hidden_size, config.num_hidden_layers, round(count_params(config) / 1e6, 1)
    (384, 4, 10.2)
    """
    from transformers import LlamaConfig

    if n_params <= 0 or vocab_size <= 0:
        raise ValueError(f"need n_params > 0 and vocab_size > 0, got {n_params}, {vocab_size}")
    candidates = []  # (outside tolerance, aspect-ratio distance, relative error, hidden, layers)
    for hidden in range(64, 16384 + 1, 64):
        heads, head_dim, intermediate = _shape(hidden)
        base = vocab_size * hidden + hidden
        layer = 4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden
        layers = max(1, round((n_params - base) / layer))
        error = abs(base + layers * layer - n_params) / n_params
        aspect = hidden / layers
        # distance in log space from the 64–128 band, 0 inside it
        distance = max(0.0, math.log(64 / aspect), math.log(aspect / 128))
        inside = error <= tolerance
        candidates.append((not inside, distance if inside else 0.0, error, hidden, layers))
        if base > 2 * n_params:  # every larger hidden size only overshoots further
            break
    *_, hidden, layers = min(candidates)
    heads, head_dim, intermediate = _shape(hidden)
    # plain multi-head attention: at these sizes the KV cache is small and GQA would save little
    return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                       head_dim=head_dim, max_position_embeddings=max_seq_len, tie_word_embeddings=True,
                       **overrides)
