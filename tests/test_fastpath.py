"""The fused LoRA forward (train/fastpath.py) against transformers + peft on a tiny random Llama:
the same loss and the same gradients for every LoRA parameter, with and without a shared prefix,
with layers left unadapted, and the cases it hands back to transformers."""

import copy

import pytest
import torch

from tailorlm.train.data import PaddedCollator, encode_chat

SYSTEM = {"role": "system", "content": "You answer questions about the Keelbox backup agent."}
QA = [("Where are logs kept?", "In /var/log/keel."), ("Is there a Linux agent?", "Yes."),
      ("Can restores run at night?", "Yes, schedule them in the console."), ("Who signs the agent?", "Keelbox Ltd.")]


def lora_model(tiny_model, **overrides):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    settings = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(copy.deepcopy(tiny_model), LoraConfig(**{**settings, **overrides}))
    with torch.no_grad():  # B starts at zero; give it values so that the LoRA branch contributes
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model.train()


def trainer(fused: bool):
    from tailorlm.train.trainer import make_trainer_class

    cls = make_trainer_class()
    t = cls.__new__(cls)
    t.tokens_seen, t.fused_lora = 0, fused
    return t


def loss_and_grads(model, batch, fused: bool):
    t = trainer(fused)
    model.zero_grad(set_to_none=True)
    loss = t.compute_loss(model, dict(batch))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads, t.fast_plan


def batch(tokenizer, share_prefix: bool):
    examples = [encode_chat(tokenizer, [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}])
                for q, a in QA]
    return PaddedCollator(tokenizer.pad_token_id, share_prefix=share_prefix)(examples)


def assert_same(a, b):
    (loss_a, grads_a, _), (loss_b, grads_b, _) = a, b
    assert torch.allclose(loss_a, loss_b, atol=1e-5), (loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert grads_a[name].abs().max() > 0, name
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("share_prefix", [True, False])
def test_fused_forward_gives_the_same_loss_and_lora_gradients(tiny_model, tokenizer, share_prefix):
    model = lora_model(tiny_model)
    b = batch(tokenizer, share_prefix)
    assert ("prefix_ids" in b) == share_prefix
    plain, fused = loss_and_grads(model, b, fused=False), loss_and_grads(model, b, fused=True)
    assert fused[2] and not plain[2]  # the fused run planned its groups; the plain one did not
    # Every LoRA A and B of both layers got a gradient: 7 adapted projections x 2 matrices x 2 layers.
    assert len(fused[1]) == 28 and all("lora_" in n for n in fused[1])
    assert_same(plain, fused)


def test_layers_without_lora_are_plain_products_and_get_no_gradient(tiny_model, tokenizer):
    from tailorlm.train.config import TrainConfig
    from tailorlm.train.trainer import lora_targets

    top_only = lora_targets(tiny_model, TrainConfig(dataset="x", lora_layers=1))
    model = lora_model(tiny_model, target_modules=top_only)
    b = batch(tokenizer, share_prefix=True)
    plain, fused = loss_and_grads(model, b, fused=False), loss_and_grads(model, b, fused=True)
    groups = fused[2]
    assert [g.adapted for g in groups[0]] == [False] * 4 and [g.adapted for g in groups[1]] == [True] * 4
    assert len(fused[1]) == 14 and all(".layers.1." in n for n in fused[1])
    assert_same(plain, fused)


def test_stacked_weights_are_views_with_the_original_values(tiny_model):
    from tailorlm.train.fastpath import plan

    model = lora_model(tiny_model)
    attn = model.get_base_model().model.layers[0].self_attn
    before = [m.base_layer.weight.detach().clone() for m in (attn.q_proj, attn.k_proj, attn.v_proj)]
    groups = plan(model)
    qkv = groups[0][0]
    assert qkv.sizes == [32, 16, 16] and qkv.weight.shape == (64, 32)
    for m, old in zip((attn.q_proj, attn.k_proj, attn.v_proj), before):
        assert torch.equal(m.base_layer.weight, old)
        assert m.base_layer.weight.untyped_storage().data_ptr() == qkv.weight.untyped_storage().data_ptr()
    assert qkv.current()
    attn.q_proj.base_layer.weight.data = attn.q_proj.base_layer.weight.data.clone()  # what .to(device) does
    assert not qkv.current()


@pytest.mark.parametrize("case", ["some_projections", "dropout", "full_fine_tuning"])
def test_unsupported_models_fall_back_to_transformers(tiny_model, tokenizer, case):
    from tailorlm.train.fastpath import plan

    if case == "full_fine_tuning":
        model = copy.deepcopy(tiny_model).train()
    elif case == "some_projections":
        model = lora_model(tiny_model, target_modules=["q_proj", "v_proj"])
    else:
        model = lora_model(tiny_model, lora_dropout=0.1)
    assert plan(model) is None
    loss, grads, fast_plan = loss_and_grads(model, batch(tokenizer, share_prefix=True), fused=True)
    assert fast_plan == [] and torch.isfinite(loss) and grads
