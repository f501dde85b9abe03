"""Answer-quality metrics against hand-computed values (and sacrebleu's own functions)."""

import math

import numpy as np
import pytest

from tailorlm.eval.metrics import (METRICS, accuracy, bleu, chrf, cost_per_1k, exact_match, expected_calibration_error,
                                   extract_label, latency_summary, macro_f1, micro_f1, normalize_answer,
                                   normalized_match, perplexity, reference_nll, rouge_l, tokens_summary)

LABELS = ["billing", "login_sso", "shipping"]


def test_normalize_answer():
    assert normalize_answer("  The Eiffel Tower!  ") == "eiffel tower"
    assert normalize_answer("An apple, a day.") == "apple day"
    assert normalize_answer("Theory of\tEverything") == "theory of everything"  # "the" only as a word


def test_exact_versus_normalized_match():
    assert exact_match(" Paris\n", "Paris") == 1.0
    assert exact_match("paris", "Paris") == 0.0
    assert normalized_match("The Paris.", "paris") == 1.0
    assert normalized_match(None, "paris") == 0.0
    assert METRICS["exact_match"](["Paris", "paris"], ["Paris", "Paris"]) == {"per_example": [1.0, 0.0], "score": 0.5}


@pytest.mark.parametrize("text, mode, expected", [
    ("The category is billing.", "first", "billing"),
    ("I think this is about login sso issues", "first", "login_sso"),
    ("Login-SSO problem", "first", "login_sso"),
    ("no idea", "first", None),
    ("shipping, or maybe billing", "first", "shipping"),  # earliest mention wins
    ("billing_v2", "first", None),  # a longer word is not a mention
    ("Login SSO.", "exact", "login_sso"),
    ("The category is billing.", "exact", None),  # exact needs the whole answer to be the label
])
def test_extract_label(text, mode, expected):
    assert extract_label(text, LABELS, mode) == expected


def test_extract_label_prefers_the_longer_label_at_the_same_position():
    assert extract_label("billing dispute", ["billing", "billing_dispute"]) == "billing_dispute"


def test_accuracy_and_macro_f1_by_hand():
    refs = ["a", "a", "a", "b", "b", "c"]
    preds = ["a", "a", "b", "b", None, "c"]
    # a: tp 2, fp 0, fn 1 -> F1 = 4/5.  b: tp 1, fp 1 (the 3rd), fn 1 (the None) -> 2/4.
    # c: tp 1 -> 1.  None is a false negative for b and a false positive for nothing.
    # Macro-F1 = (0.8 + 0.5 + 1) / 3; accuracy = 4/6.
    acc = accuracy(preds, refs)
    assert acc["per_example"] == [1, 1, 0, 1, 0, 1] and acc["score"] == pytest.approx(4 / 6)
    f1 = macro_f1(preds, refs, labels=["a", "b", "c"])
    assert f1["per_label"] == pytest.approx({"a": 0.8, "b": 0.5, "c": 1.0})
    assert f1["score"] == pytest.approx(2.3 / 3)
    assert f1["per_example"] == acc["per_example"]


def test_accuracy_macro_and_micro_f1_differ_and_match_sklearn():
    from sklearn.metrics import f1_score

    refs = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    preds = ["a", "a", "a", None, "a", "b", "b", "b", "c", "c"]
    # a: tp 3, fp 1, fn 1 -> 6/8.  b: tp 3, fp 0, fn 1 -> 6/7.  c: tp 2 -> 1.  Macro = (.75 + 6/7 + 1) / 3.
    # Micro: tp 8, fp 1 (a b ticket answered a), fn 2 (that one and the None) -> 16/19. Accuracy 8/10.
    acc, ma, mi = accuracy(preds, refs)["score"], macro_f1(preds, refs)["score"], micro_f1(preds, refs)["score"]
    assert (acc, ma, mi) == pytest.approx((0.8, (0.75 + 6 / 7 + 1) / 3, 16 / 19))
    assert len({round(acc, 4), round(ma, 4), round(mi, 4)}) == 3
    sk = [p or "none" for p in preds]
    assert ma == pytest.approx(f1_score(refs, sk, labels=["a", "b", "c"], average="macro", zero_division=0))
    assert mi == pytest.approx(f1_score(refs, sk, labels=["a", "b", "c"], average="micro", zero_division=0))
    # The corpus value from per-example counts is the same number, which is what the bootstrap resamples.
    for fn in (macro_f1, micro_f1):
        r = fn(preds, refs)
        assert r["from_stats"](r["stats"].sum(axis=0)) == pytest.approx(r["score"])


def test_a_label_nobody_uses_scores_zero_like_sklearn():
    from sklearn.metrics import f1_score

    refs, preds = ["a", "a", "b"], ["a", "b", "b"]
    r = macro_f1(preds, refs, labels=["a", "b", "c"])
    assert r["per_label"]["c"] == 0.0
    assert r["score"] == pytest.approx(f1_score(refs, preds, labels=["a", "b", "c"], average="macro", zero_division=0))


def test_expected_calibration_error_by_hand():
    conf = [0.95, 0.92, 0.85, 0.81, 0.55, 0.3, 1.0]
    hit = [1, 1, 0, 1, 1, 0, 1]
    # Bins of width 0.1. [0.9, 1.0]: 0.95, 0.92, 1.0, all right: |1 - 0.9567| = 0.0433, weight 3/7.
    # [0.8, 0.9): 0.85 wrong, 0.81 right: |0.5 - 0.83| = 0.33, weight 2/7. [0.5, 0.6): |1 - 0.55|, 1/7.
    # [0.3, 0.4): |0 - 0.3|, 1/7. ECE = (3 * 0.04333 + 2 * 0.33 + 0.45 + 0.3) / 7 = 0.22
    r = expected_calibration_error(conf, hit)
    assert r["ece"] == pytest.approx((3 * (1 - (0.95 + 0.92 + 1.0) / 3) + 2 * 0.33 + 0.45 + 0.3) / 7)
    assert r["ece"] == pytest.approx(0.22)
    assert r["n_bins"] == 10 and [b["n"] for b in r["bins"]] == [0, 0, 0, 1, 0, 1, 0, 0, 2, 3]
    assert r["bins"][8]["accuracy"] == 0.5 and r["bins"][8]["confidence"] == pytest.approx(0.83)
    assert r["from_stats"](r["stats"].sum(axis=0)) == pytest.approx(r["ece"])
    assert expected_calibration_error([0.7, 0.7], [1, 0])["ece"] == pytest.approx(0.2)  # acc 0.5 at conf 0.7
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error([1.2], [1])


def test_classification_metrics_extract_from_free_text():
    preds = ["It is billing.", "Rambling with no label at all", "login sso, clearly"]
    refs = ["billing", "shipping", "login_sso"]
    assert METRICS["accuracy"](preds, refs, labels=LABELS, extract="first")["per_example"] == [1, 0, 1]


def test_bleu_and_chrf_bounds_and_sacrebleu_agreement():
    import sacrebleu

    same = ["the cat sat on the mat"]
    assert bleu(same, same)["score"] == pytest.approx(100)
    assert chrf(same, same)["score"] == pytest.approx(100)
    assert bleu(["xyz qqq"], ["the cat sat"])["score"] == pytest.approx(0, abs=1e-6)
    assert chrf(["xyz qqq"], ["abc def"])["score"] == pytest.approx(0, abs=1e-6)

    preds = ["the cat is on the mat", "there is a dog in the garden"]
    refs = ["the cat sat on the mat", "a dog is in the garden"]
    result = bleu(preds, refs)
    assert result["score"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert result["per_example"] == pytest.approx([sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(preds, refs)])
    assert 0 < result["score"] < 100
    assert bleu([None], ["text"])["per_example"] == [0.0]  # a failed generation scores 0
    # The corpus score is rebuilt from summed per-sentence statistics, which is what the bootstrap resamples.
    for fn in (bleu, chrf):
        r = fn(preds, refs)
        assert r["from_stats"](np.asarray(r["stats"]).sum(axis=0)) == pytest.approx(r["score"])


def test_rouge_l_on_a_hand_computed_lcs():
    # LCS("the cat sat", "the black cat sat down") = "the cat sat": P = 3/3, R = 3/5, F = 2PR/(P+R) = 0.75.
    assert rouge_l(["the cat sat"], ["the black cat sat down"])["per_example"] == pytest.approx([0.75])


def test_perplexity_of_known_nlls():
    result = perplexity([[1.0, 3.0], [2.0]])
    assert result["per_example"] == [2.0, 2.0]
    assert result["perplexity"] == pytest.approx(math.exp(6 / 3)) and result["n_tokens"] == 3
    with pytest.raises(ValueError):
        perplexity([[]])


def test_reference_nll_matches_a_token_by_token_computation(tiny_model, tokenizer, tiny_generator):
    import torch

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    nlls = reference_nll(tiny_model, tokenizer, messages, "Paris.")
    assert reference_nll(tiny_generator, None, messages, "Paris.") == pytest.approx(nlls)

    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer("Paris.<|im_end|>", add_special_tokens=False)["input_ids"]
    assert answer_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")  # end of turn is scored
    expected = []
    with torch.no_grad():
        for k, token in enumerate(answer_ids):  # predict each answer token from everything before it
            logits = tiny_model(torch.tensor([prompt_ids + answer_ids[:k]])).logits[0, -1]
            expected.append(-torch.log_softmax(logits, -1)[token].item())
    assert nlls == pytest.approx(expected, abs=1e-4)


def test_latency_and_token_summaries():
    lat = latency_summary([float(x) for x in range(1, 11)])
    # Linear interpolation: p50 between 5 and 6; p95 at rank 0.95 * 9 = 8.55 -> 9 + 0.55.
    assert lat == pytest.approx({"p50": 5.5, "p95": 9.55, "mean": 5.5, "n": 10})
    assert tokens_summary([10, 20, 30])["total"] == 60


def test_cost_with_api_prices_hourly_prices_and_none():
    api = cost_per_1k(2_000_000, 500_000, 1000, {"api_input_per_1m": 0.5, "api_output_per_1m": 2.0})
    # 2M * $0.5/1M + 0.5M * $2/1M = $2 for 1,000 queries.
    assert api["usd_per_1k"] == pytest.approx(2.0) and api["basis"] == "api"
    hourly = cost_per_1k(0, 0, 500, {"gpu_hour": 3.6, "seconds": 100})
    # 100 s at $3.6/h = $0.10 for 500 queries -> $0.20 per 1,000.
    assert hourly["usd_per_1k"] == pytest.approx(0.2) and hourly["basis"] == "gpu_hour"
    assert cost_per_1k(0, 0, 10, {"cpu_hour": 0.1})["usd_per_1k"] is None  # no measured seconds
    none = cost_per_1k(100, 100, 10, {})
    assert none["usd_per_1k"] is None and "no price" in none["reason"]


def test_registry_has_uniform_results():
    for name, fn in METRICS.items():
        out = fn(["billing"], ["billing"])
        assert set(out) >= {"per_example", "score"} and len(out["per_example"]) == 1, name
    with pytest.raises(ValueError):
        METRICS["accuracy"](["a"], ["a", "b"])


@pytest.mark.parametrize("pred, ref, expected", [
    ("The capital of France is Paris.", "Paris", 1.0),
    ("2+2=4", "4", 1.0),  # punctuation separates words instead of gluing "224"
    ("One kilogram is 1,000 grams.", "1000", 1.0),
    ("The capital of Canada is Ottawa, Canada.", "ottawa", 1.0),
    ("The Pacific Ocean", "the pacific", 1.0),  # articles dropped on both sides
    ("Parisian food", "Paris", 0.0),  # whole words only
    ("12 months", "2", 0.0),
    ("It is 100 degrees.", "10", 0.0),
    (None, "Paris", 0.0),  # a failed answer is wrong, not dropped
    ("anything at all", "  ", 0.0),  # an empty reference never matches
])
def test_contains_match(pred, ref, expected):
    from tailorlm.eval.metrics import contains_match

    assert contains_match(pred, ref) == expected


def test_contains_is_registered():
    assert METRICS["contains"](["It is Tuesday.", "Sunday"], ["Tuesday", "Saturday"]) == {"per_example": [1.0, 0.0], "score": 0.5}


def _general_suite():
    from tailorlm.data.readers.records import read_file
    from tailorlm.eval.general import general_suite_path

    path = general_suite_path()
    return list(read_file(path, path.name, "general", kind="eval"))


def test_general_suite_ships_as_valid_eval_records():
    records = _general_suite()
    assert all(r.kind == "eval" for r in records), [r for r in records if r.kind != "eval"][:1]  # no Rejected
    assert 35 <= len(records) <= 50 and len({r.id for r in records}) == len(records)
    assert all(r.content["input"][-1]["role"] == "user" and r.content["reference"].strip() for r in records)
    # A reference inside its own question is matched by an answer that merely echoes the question;
    # only the instruction to reply with a given word may do that.
    echoes = [r.id for r in records if METRICS["contains"]([r.content["input"][-1]["content"]], [r.content["reference"]])["score"]]
    assert echoes == ["gen-020"]


@pytest.mark.slow
def test_the_embedded_model_scores_between_zero_and_one_on_the_general_suite():
    """Forgetting must be visible: the base 135M model gets some questions right, and some wrong."""
    from tailorlm.models.base import GenParams
    from tailorlm.models.embedded import ensure
    from tailorlm.models.local import LocalGenerator

    ensure("smollm2-135m-instruct")
    records = _general_suite()
    gen = LocalGenerator.load("smollm2-135m-instruct")
    answers = gen.generate_batch([r.content["input"] for r in records], GenParams(max_tokens=32))
    result = METRICS["contains"]([a.text for a in answers], [r.content["reference"] for r in records])
    assert 0.4 <= result["score"] <= 0.8, result["score"]  # 25/40 = 0.625 when measured
