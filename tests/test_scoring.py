"""Label scoring: each label's summed log-probability as the whole answer, checked against a plain
full forward pass over prompt + label, and held to the label set by every classification rung."""

import math

import pytest

from tailorlm.models.scoring import choose, continuation_ids, score_choices

LABELS = ["billing", "login_sso", "sync_conflict", "data_restore", "api_error", "feature_request"]


def brute_force(gen, messages, label):
    """log p(label + end-of-turn | prompt) from one forward pass over the whole sequence, no cache."""
    import torch

    prompt = gen.encode(messages)
    cont = continuation_ids(gen.tokenizer, [label], gen.eos_ids)[0]
    ids = torch.tensor([prompt + cont])
    with torch.inference_mode():
        logp = torch.log_softmax(gen.model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(float(logp[len(prompt) - 1 + t, tok]) for t, tok in enumerate(cont))


def test_continuation_is_the_label_then_the_end_of_turn(tokenizer):
    eos = {tokenizer.convert_tokens_to_ids("<|im_end|>")}
    ids = continuation_ids(tokenizer, ["login_sso"], eos)[0]
    assert ids[-1] in eos
    assert tokenizer.decode(ids[:-1]) == "login_sso"


def test_scores_equal_a_full_forward_pass(tiny_generator):
    system = {"role": "system", "content": "Name the team for this support ticket. " * 4}  # long enough to share a prefix
    convos = [[system, {"role": "user", "content": q}] for q in
              ["I was charged twice", "SSO login fails with a SAML error", "restore my deleted folder please, it is urgent"]]
    scores = score_choices(tiny_generator, convos, LABELS)
    assert len(scores) == 3 and all(len(s) == len(LABELS) for s in scores)
    for convo, row in zip(convos, scores):
        for label, s in zip(LABELS, row):
            assert s == pytest.approx(brute_force(tiny_generator, convo, label), abs=1e-4)


def test_choose_gives_the_argmax_and_its_probability_among_the_labels():
    label, confidence, table = choose([-1.0, -2.0, -3.0], ["a", "b", "c"])
    z = math.exp(-1) + math.exp(-2) + math.exp(-3)
    assert label == "a"
    assert confidence == pytest.approx(math.exp(-1) / z)
    assert table == {"a": -1.0, "b": -2.0, "c": -3.0}
