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


def test_a_held_rung_answers_only_with_labels_in_batches_single_and_streamed(tiny_generator):
    from tailorlm.rungs.base import PromptRung

    rung = PromptRung(tiny_generator, "Name the team.").hold_to(LABELS)
    questions = [[{"role": "user", "content": q}] for q in
                 ["charged twice", "cannot log in", "two copies of my file", "where is my backup", "500 from the API"]]
    answers = rung.answer_batch(questions, batch_size=2)
    assert all(a.text in LABELS and a.error is None for a in answers)  # random weights: the label set does the work
    for a in answers:
        logprobs = a.meta["raw"]["label_logprobs"]
        assert set(logprobs) == set(LABELS) and a.text == max(logprobs, key=logprobs.get)
        assert 1 / len(LABELS) <= a.meta["confidence"] <= 1
    single = rung.answer(questions[0])
    assert single.text == answers[0].text
    assert "".join(c.text for c in rung.stream(questions[0])) == single.text


def test_free_mode_keeps_the_raw_text_and_extracts_the_label(tiny_generator):
    from tailorlm.rungs.base import PromptRung

    rung = PromptRung(tiny_generator).hold_to(LABELS, "free")
    a = rung.answer([{"role": "user", "content": "hi"}])
    assert "raw" in a.meta and (a.text == "" or a.text in LABELS)


def test_auto_epochs_follows_the_openai_rule():
    from tailorlm.train.config import auto_epochs

    assert auto_epochs(300) == 3          # 900 examples seen: inside [100, 25000]
    assert auto_epochs(20) == 5           # 3 x 20 < 100: 100 // 20
    assert auto_epochs(2) == 25           # capped at 25
    assert auto_epochs(20_000) == 1       # 3 x 20000 > 25000: 25000 // 20000
    assert auto_epochs(10_000) == 2       # 25000 // 10000
