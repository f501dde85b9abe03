"""A faster training forward for Llama-family decoders with LoRA: `tailor train sft|cpt` uses it
when `plan()` accepts the model (and `fused_lora` is on), and transformers' forward otherwise.

Same loss and same gradients as the transformers + peft forward (tests/test_fastpath.py compares
them); what differs is how the work is laid out:
- Linear layers that read the same input run as one matrix product: q/k/v, and gate/up. Their
  frozen weights are stacked once, and each module's own weight becomes a view of the stack, so no
  memory is added and saving, merging and exporting are unchanged.
- Each group's LoRA branches are one autograd node with hand-written gradients (`LoraGroup`): the
  A matrices of a group are one product, each B is added into its slice of the output in place,
  and the backward pass does the same, instead of peft's two products, a scale and an add per
  module, each its own node.
- The prompt prefix a micro-batch shares (`prefix_ids`) goes through every linear layer together
  with the sequences, as one matrix of P + B·L rows, instead of a separate small pass; only
  attention treats it apart: the prefix attends causally to itself, and every sequence to the whole
  prefix and causally to itself.
- Attention is grouped-query SDPA, without repeating keys and values per query head.

Batches must be right-padded (padding is never attended to by a real token under a causal mask,
so no padding mask is needed). Packed rows, autocast (bf16/fp16), DoRA, dropout on the LoRA branch,
biases, full fine-tuning and other architectures use transformers' forward.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

GROUPS = (("self_attn", ("q_proj", "k_proj", "v_proj")), ("self_attn", ("o_proj",)),
          ("mlp", ("gate_proj", "up_proj")), ("mlp", ("down_proj",)))


class Unsupported(Exception):
    """The model has something the fast forward does not implement."""


def spans(sizes: list[int]) -> list[tuple[int, int]]:
    out, start = [], 0
    for size in sizes:
        out.append((start, start + size))
        start += size
    return out


def lora_forward(x, weight, sizes, scales, a_list, b_list):
    """(y, A stacked, u = x·Aᵀ): y = x·Wᵀ with each module's s·u_i·B_iᵀ added into its slice."""
    ranks = [a.shape[0] for a in a_list]
    a_all = torch.cat(a_list) if len(a_list) > 1 else a_list[0]
    y = x @ weight.t()
    u = x @ a_all.t()
    for (o0, o1), (r0, r1), b, s in zip(spans(sizes), spans(ranks), b_list, scales):
        y[:, o0:o1].addmm_(u[:, r0:r1], b.t(), alpha=s)
    return y, a_all, u


def lora_backward(grad, x, weight, a_all, u, sizes, scales, b_list, need_x: bool):
    """(grad x or None, grads of each A, grads of each B) for `lora_forward`."""
    ranks = [b.shape[1] for b in b_list]
    grads_u, grads_b = [], []  # grads_u: the gradient at u = x·Aᵀ, scale included
    for (o0, o1), (r0, r1), b, s in zip(spans(sizes), spans(ranks), b_list, scales):
        g = grad[:, o0:o1]
        grads_u.append((g @ b).mul_(s))
        grads_b.append((g.t() @ u[:, r0:r1]).mul_(s))
    grad_u = torch.cat(grads_u, dim=1) if len(grads_u) > 1 else grads_u[0]
    grad_x = (grad @ weight).addmm_(grad_u, a_all) if need_x else None
    return grad_x, list((grad_u.t() @ x).split(ranks)), grads_b


class LoraGroup(torch.autograd.Function):
    """y = x·Wᵀ + [s_i·(x·A_iᵀ)·B_iᵀ for each module i, side by side], W frozen (the stacked weights)."""

    @staticmethod
    def forward(ctx, x, weight, sizes, scales, *adapters):
        a_list, b_list = adapters[: len(sizes)], adapters[len(sizes) :]
        y, a_all, u = lora_forward(x, weight, sizes, scales, a_list, b_list)
        ctx.save_for_backward(x, weight, a_all, u, *b_list)
        ctx.sizes, ctx.scales = sizes, scales
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, a_all, u, *b_list = ctx.saved_tensors
        grad_x, grads_a, grads_b = lora_backward(grad, x, weight, a_all, u, ctx.sizes, ctx.scales, b_list,
                                                 ctx.needs_input_grad[0])
        return (grad_x, None, None, None, *grads_a, *grads_b)


class SwiGLUDown(torch.autograd.Function):
    """down(silu(gate)·up) for gate_up = [gate | up], `down` a LoRA group of one module. Only gate_up is
    kept for the backward pass, which recomputes silu(gate)·up: two (tokens × intermediate) tensors
    per layer fewer than autograd would keep."""

    @staticmethod
    def forward(ctx, gate_up, width, weight, sizes, scales, *adapters):
        gate, up = gate_up[:, :width], gate_up[:, width:]
        a_list, b_list = adapters[: len(sizes)], adapters[len(sizes) :]
        y, a_all, u = lora_forward(F.silu(gate) * up, weight, sizes, scales, a_list, b_list)
        ctx.save_for_backward(gate_up, weight, a_all, u, *b_list)
        ctx.width, ctx.sizes, ctx.scales = width, sizes, scales
        return y

    @staticmethod
    def backward(ctx, grad):
        gate_up, weight, a_all, u, *b_list = ctx.saved_tensors
        gate, up = gate_up[:, : ctx.width], gate_up[:, ctx.width :]
        act = F.silu(gate)
        grad_x, grads_a, grads_b = lora_backward(grad, act * up, weight, a_all, u, ctx.sizes, ctx.scales, b_list,
                                                 ctx.needs_input_grad[0])
        grad_gate_up = None
        if grad_x is not None:
            grad_gate_up = torch.empty_like(gate_up)
            torch.mul(grad_x, act, out=grad_gate_up[:, ctx.width :])
            grad_gate_up[:, : ctx.width] = torch.ops.aten.silu_backward(grad_x.mul_(up), gate)
        return (grad_gate_up, None, None, None, None, *grads_a, *grads_b)


@dataclass
class Group:
    """Linear layers that read the same input. `weight` stacks their frozen weights (each module's
    weight is a view of it); `modules` are peft LoRA layers (one active adapter each) or plain ones."""

    modules: list
    weight: torch.Tensor
    sizes: list[int]
    adapted: bool

    def __call__(self, x):
        if not self.adapted:
            return x @ self.weight.t()
        return LoraGroup.apply(x, self.weight, self.sizes, *self.adapter_args())

    def after_swiglu(self, gate_up, width: int):
        """self(silu(gate)·up), keeping less for the backward pass (see SwiGLUDown)."""
        if not self.adapted:
            gate, up = gate_up[:, :width], gate_up[:, width:]
            return (F.silu(gate) * up) @ self.weight.t()
        return SwiGLUDown.apply(gate_up, width, self.weight, self.sizes, *self.adapter_args())

    def adapter_args(self) -> list:
        """The scales, then every A, then every B, of the modules' active adapters."""
        names = [m.active_adapters[0] for m in self.modules]
        return [[m.scaling[n] for m, n in zip(self.modules, names)],
                *[m.lora_A[n].weight for m, n in zip(self.modules, names)],
                *[m.lora_B[n].weight for m, n in zip(self.modules, names)]]

    def current(self) -> bool:
        """Still laid out as planned (a `.to(device)` gives every weight a storage of its own)."""
        return base_linear(self.modules[0]).weight.data_ptr() == self.weight.data_ptr()


def base_linear(module):
    return module.base_layer if hasattr(module, "base_layer") else module


def check_linear(module) -> bool:
    """True for a LoRA layer the fast forward implements, False for a plain frozen Linear; raises
    Unsupported for anything else."""
    base = base_linear(module)
    if type(base) is not torch.nn.Linear or base.bias is not None or base.weight.requires_grad:
        raise Unsupported(f"{type(module).__name__}: not a frozen Linear without bias")
    if base is module:
        return False
    names = list(getattr(module, "active_adapters", []))
    if len(names) != 1 or getattr(module, "merged", False) or getattr(module, "disable_adapters", False):
        raise Unsupported("LoRA layer with other than one active, unmerged adapter")
    name = names[0]
    if (module.use_dora.get(name) or not isinstance(module.lora_dropout[name], torch.nn.Identity)
            or module.lora_A[name].bias is not None or module.lora_B[name].bias is not None):
        raise Unsupported("LoRA layer with DoRA, dropout or a bias")
    return True


def plan(model) -> list[list[Group]] | None:
    """The groups of every decoder layer, with the weights stacked, or None when the model is not a
    Llama decoder whose projections are all (or, per group, none) LoRA layers of the supported kind."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config, decoder = base.config, getattr(base, "model", None)
    if (config.model_type != "llama" or getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)
            or config.hidden_act != "silu" or getattr(config, "attention_dropout", 0.0)
            or not hasattr(decoder, "layers") or not hasattr(decoder, "rotary_emb")):
        return None
    try:
        found = []
        for layer in decoder.layers:
            groups = []
            for parent, names in GROUPS:
                modules = [getattr(getattr(layer, parent), n) for n in names]
                adapted = {check_linear(m) for m in modules}
                if len(adapted) > 1:
                    raise Unsupported("a group with LoRA on some of its layers only")
                groups.append((modules, adapted.pop()))
            found.append(groups)
    except (Unsupported, AttributeError):
        return None
    return [[stack(modules, adapted) for modules, adapted in groups] for groups in found]


def stack(modules: list, adapted: bool) -> Group:
    linears = [base_linear(m) for m in modules]
    if len(linears) == 1:
        weight = linears[0].weight.data
    else:
        weight = torch.cat([lin.weight.data for lin in linears])
        for lin, (start, end) in zip(linears, spans([lin.out_features for lin in linears])):
            lin.weight.data = weight[start:end]
    return Group(modules, weight, [lin.out_features for lin in linears], adapted)


def attend(attn, q, k, v, cos, sin, batch: int, length: int, cut: int, mask):
    """Attention output rows (prefix rows first) for projections laid out as cut + batch·length rows."""
    hd = attn.head_dim

    def split(t):  # -> prefix (1, heads, cut, hd), sequences (batch, heads, length, hd)
        heads = t.shape[1] // hd
        return (t[:cut].reshape(1, cut, heads, hd).transpose(1, 2),
                t[cut:].reshape(batch, length, heads, hd).transpose(1, 2))

    (qp, qb), (kp, kb), (vp, vb) = split(q), split(k), split(v)
    qb, kb = apply_rotary_pos_emb(qb, kb, cos[cut:], sin[cut:], unsqueeze_dim=0)  # cos, sin: (positions, hd)
    sdpa = F.scaled_dot_product_attention
    if not cut:
        out = sdpa(qb, kb, vb, is_causal=True, scale=attn.scaling, enable_gqa=True)
        return out.transpose(1, 2).reshape(batch * length, -1)
    qp, kp = apply_rotary_pos_emb(qp, kp, cos[:cut], sin[:cut], unsqueeze_dim=0)
    out_p = sdpa(qp, kp, vp, is_causal=True, scale=attn.scaling, enable_gqa=True)
    keys = torch.cat([kp.expand(batch, -1, -1, -1), kb], dim=2)
    values = torch.cat([vp.expand(batch, -1, -1, -1), vb], dim=2)
    out_b = sdpa(qb, keys, values, attn_mask=mask, scale=attn.scaling, enable_gqa=True)
    return torch.cat([out_p.transpose(1, 2).reshape(cut, -1), out_b.transpose(1, 2).reshape(batch * length, -1)])


def hidden_states(decoder, groups: list[list[Group]], input_ids, prefix_ids=None):
    """The final hidden states (batch, length, hidden) of right-padded `input_ids`, every sequence
    preceded by `prefix_ids` (1, P) when given."""
    batch, length = input_ids.shape
    cut = prefix_ids.shape[1] if prefix_ids is not None else 0
    x = decoder.embed_tokens(input_ids).reshape(batch * length, -1)
    if cut:
        x = torch.cat([decoder.embed_tokens(prefix_ids[0]), x])
    positions = torch.arange(cut + length, device=input_ids.device).unsqueeze(0)
    cos, sin = (t[0] for t in decoder.rotary_emb(x, positions))
    # Sequence token i (at position cut + i) sees the whole prefix and its own tokens up to i.
    mask = torch.ones(length, cut + length, dtype=torch.bool, device=x.device).tril(diagonal=cut) if cut else None
    for layer, (qkv, out, gate_up, down) in zip(decoder.layers, groups):
        q, k, v = qkv(layer.input_layernorm(x)).split(qkv.sizes, dim=1)
        x = x + out(attend(layer.self_attn, q, k, v, cos, sin, batch, length, cut, mask))
        x = x + down.after_swiglu(gate_up(layer.post_attention_layernorm(x)), gate_up.sizes[0])
    return decoder.norm(x[cut:]).reshape(batch, length, -1)


def right_padded(mask) -> bool:
    """Every row's ones come before its zeros."""
    return mask is None or not bool((mask[:, 1:] > mask[:, :-1]).any())
