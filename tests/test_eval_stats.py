"""Tests for eval/stats.py and eval/retrieval.py against hand-computed values and simulations."""

import math
import time

import numpy as np
import pytest

from tailorlm.eval.retrieval import (
    mrr,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    score_queries,
)
from tailorlm.eval.stats import (
    mcnemar,
    mean_ci,
    paired_bootstrap,
    paired_permutation,
    wilson_ci,
)

# ---- retrieval -------------------------------------------------------------------------------


def test_retrieval_metrics_by_hand():
    ranked, relevant = ["a", "b", "c", "d"], {"b", "d"}
    # First relevant is "b" at rank 2 -> 1/2.
    assert mrr(ranked, relevant) == 0.5
    # Top 2 = {a, b}: one of two relevant found.
    assert recall_at_k(ranked, relevant, 2) == 0.5
    assert recall_at_k(ranked, relevant, 4) == 1.0
    assert precision_at_k(ranked, relevant, 2) == 0.5
    assert precision_at_k(ranked, relevant, 4) == 0.5
    # DCG@4: hits at ranks 2 and 4 -> 1/log2(3) + 1/log2(5); ideal puts both first -> 1 + 1/log2(3).
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, relevant, 4) == pytest.approx(expected)
    # nDCG@1: rank 1 is "a", not relevant -> 0; ideal DCG@1 is 1.
    assert ndcg_at_k(ranked, relevant, 1) == 0.0


def test_ndcg_ideal_uses_min_k_relevant():
    # Three relevant ids but k = 2: the ideal ranking can only place two, so a perfect top 2 is 1.0.
    assert ndcg_at_k(["x", "y", "z"], {"x", "y", "z"}, 2) == pytest.approx(1.0)
    # Recall@2 is still 2/3 because one relevant id is out of reach.
    assert recall_at_k(["x", "y", "z"], {"x", "y", "z"}, 2) == pytest.approx(2 / 3)


def test_no_relevant_retrieved_scores_zero():
    assert mrr(["a", "b"], {"z"}) == 0.0
    assert recall_at_k(["a", "b"], {"z"}, 2) == 0.0
    assert ndcg_at_k(["a", "b"], {"z"}, 2) == 0.0
    assert mrr([], {"z"}) == 0.0


def test_duplicates_count_once():
    # Deduplicated list is [b, a, d]: "b" cannot fill both of the top 2 slots.
    ranked = ["b", "b", "a", "d"]
    assert precision_at_k(ranked, {"b", "d"}, 2) == 0.5
    assert recall_at_k(ranked, {"b", "d"}, 2) == 0.5
    # With duplicates dropped, "d" sits at rank 3: DCG = 1 + 1/log2(4) = 1.5, ideal = 1 + 1/log2(3).
    assert ndcg_at_k(ranked, {"b", "d"}, 3) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert mrr(["a", "a", "b"], {"b"}) == 0.5


def test_score_queries_shape_and_means():
    runs = [
        (["a", "b", "c", "d"], {"b", "d"}),  # recall@2 0.5, mrr 0.5
        (["x", "y"], {"x"}),  # recall@2 1.0, mrr 1.0, ndcg 1.0
        (["p", "q"], {"z"}),  # nothing found: all 0
    ]
    r = score_queries(runs, k=2)
    assert r["n"] == 3 and len(r["per_query"]) == 3
    assert [q["mrr"] for q in r["per_query"]] == [0.5, 1.0, 0.0]
    assert r["mrr"]["mean"] == pytest.approx(0.5)
    assert r["recall@k"]["mean"] == pytest.approx(0.5)
    # Query 1: DCG@2 = 1/log2(3), ideal@2 = 1 + 1/log2(3).
    ndcg0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert r["ndcg@k"]["mean"] == pytest.approx((ndcg0 + 1.0) / 3)
    for name in ("recall@k", "mrr", "ndcg@k"):
        assert r[name]["low"] <= r[name]["mean"] <= r[name]["high"]


def test_score_queries_rejects_bad_input():
    with pytest.raises(ValueError, match="no relevant"):
        score_queries([(["a"], {"a"}), (["a"], set())], k=1)
    with pytest.raises(ValueError):
        score_queries([], k=1)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(["a"], {"a"}, 0)


# ---- confidence intervals --------------------------------------------------------------------


def test_wilson_known_value():
    # 8/10 at 95%: the textbook Wilson interval is about [0.490, 0.943].
    r = wilson_ci(8, 10)
    assert r["mean"] == 0.8 and r["n"] == 10
    assert r["low"] == pytest.approx(0.4902, abs=5e-4)
    assert r["high"] == pytest.approx(0.9433, abs=5e-4)
    # Stays inside [0, 1] at the extremes, where the Wald interval would collapse to a point.
    r = wilson_ci(10, 10)
    assert r["high"] == 1.0 and 0.65 < r["low"] < 0.75


def test_mean_ci_uses_wilson_for_binary_and_bootstrap_otherwise():
    binary = mean_ci([1] * 8 + [0] * 2)
    assert binary["method"] == "wilson"
    assert binary["low"] == pytest.approx(wilson_ci(8, 10)["low"])
    rng = np.random.default_rng(1)
    values = rng.normal(0.5, 0.2, size=400)
    r = mean_ci(values)
    assert r["method"] == "bootstrap" and r["n"] == 400
    # Close to the normal-theory interval mean +- 1.96 * sd / sqrt(n).
    half = 1.96 * values.std(ddof=1) / math.sqrt(400)
    assert r["low"] == pytest.approx(values.mean() - half, abs=0.004)
    assert r["high"] == pytest.approx(values.mean() + half, abs=0.004)
    assert mean_ci(values) == r  # seeded: same input, same interval


def test_empty_and_bad_inputs_raise():
    with pytest.raises(ValueError, match="empty"):
        mean_ci([])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([0.5, float("nan")])
    for fn in (paired_bootstrap, paired_permutation, mcnemar):
        with pytest.raises(ValueError, match="differ in length"):
            fn([1, 0, 1], [1, 0])
        with pytest.raises(ValueError, match="empty"):
            fn([], [])
    with pytest.raises(ValueError, match="0/1"):
        mcnemar([0.5, 1], [1, 1])


# ---- paired tests ----------------------------------------------------------------------------


def test_identical_systems_give_zero_delta_and_p_one():
    a = np.random.default_rng(2).integers(0, 2, size=200)
    boot = paired_bootstrap(a, a)
    assert boot["delta"] == 0.0 and boot["low"] == 0.0 and boot["high"] == 0.0
    assert boot["p_value"] == 1.0 and isinstance(boot["p_value"], float)
    assert paired_permutation(a, a) == {"delta": 0.0, "p_value": 1.0, "n": 200}
    m = mcnemar(a, a)
    assert (m["b01"], m["b10"], m["p_value"]) == (0, 0, 1.0)


def test_real_difference_is_significant():
    rng = np.random.default_rng(3)
    a = (rng.random(300) < 0.5).astype(float)
    b = np.maximum(a, rng.random(300) < 0.3)  # B fixes ~30% of A's mistakes, breaks none
    boot = paired_bootstrap(a, b)
    assert boot["delta"] > 0.1 and boot["low"] > 0 and boot["p_value"] < 0.001
    assert paired_permutation(a, b)["p_value"] < 0.001
    assert mcnemar(a, b)["p_value"] < 0.001


def test_permutation_noise_is_not_significant():
    # Two systems with the same true accuracy, disagreeing at random: no real difference.
    rng = np.random.default_rng(4)
    a, b = rng.random(200) < 0.6, rng.random(200) < 0.6
    assert paired_permutation(a, b)["p_value"] > 0.05
    assert paired_bootstrap(a, b)["p_value"] > 0.05


def test_permutation_exact_enumeration_by_hand():
    # Three differences of +1: of the 2^3 sign patterns only all-plus and all-minus reach |mean| 1.
    assert paired_permutation([0, 0, 0], [1, 1, 1])["p_value"] == 0.25
    # Zeros do not change the statistic, so they do not change the exact p-value either.
    assert paired_permutation([0, 0, 0, 5, 5], [1, 1, 1, 5, 5])["p_value"] == 0.25
    # Differences (+2, -1): patterns give |mean| in {0.5, 1.5, 1.5, 0.5}; observed 0.5 -> p = 1.
    assert paired_permutation([0, 1], [2, 0])["p_value"] == 1.0


def test_permutation_monte_carlo_matches_exact_tail():
    # 20 differences, 14 of +1 and 6 of -1 (past the exact limit, so sampled). Under the null the
    # number of plus signs is Binomial(20, 1/2) and |mean| >= 8/20 needs #plus >= 14 or <= 6, so
    # the exact two-sided p is 2 * P(X >= 14).
    exact = 2 * sum(math.comb(20, i) for i in range(14, 21)) / 2**20
    r = paired_permutation([0] * 20, [1] * 14 + [-1] * 6, n_perm=20_000)
    assert r["p_value"] == pytest.approx(exact, abs=0.01)


def test_mcnemar_exact_matches_scipy_binomtest():
    scipy_stats = pytest.importorskip("scipy.stats")
    # 7 examples only B gets right, 2 only A gets right, 11 both right.
    a = [0] * 7 + [1] * 2 + [1] * 11
    b = [1] * 7 + [0] * 2 + [1] * 11
    r = mcnemar(a, b)
    assert (r["b01"], r["b10"], r["method"]) == (7, 2, "exact")
    assert r["p_value"] == pytest.approx(scipy_stats.binomtest(7, 9, 0.5).pvalue)
    # Hand value: 2 * (C(9,0) + C(9,1) + C(9,2)) / 2^9 = 2 * 46 / 512.
    assert r["p_value"] == pytest.approx(92 / 512)


def test_mcnemar_chi_square_for_many_discordant_pairs():
    scipy_stats = pytest.importorskip("scipy.stats")
    a = [0] * 30 + [1] * 10
    b = [1] * 30 + [0] * 10
    r = mcnemar(a, b)
    assert r["method"] == "chi2-corrected"
    # (|30 - 10| - 1)^2 / 40 = 9.025
    assert r["statistic"] == pytest.approx(9.025)
    assert r["p_value"] == pytest.approx(scipy_stats.chi2.sf(9.025, df=1))


def test_paired_bootstrap_is_fast():
    rng = np.random.default_rng(5)
    a, b = rng.random(1000), rng.random(1000)
    paired_bootstrap(a[:10], b[:10], n_boot=10)  # warm numpy up
    start = time.perf_counter()
    paired_bootstrap(a, b, n_boot=10_000)
    # Typically ~0.1 s; the bound is loose so a busy CI machine does not fail it.
    assert time.perf_counter() - start < 2.0


def test_paired_bootstrap_coverage_on_known_difference():
    # 300 simulated suites of 150 examples. Example i has a difficulty p_i ~ U(0.2, 0.8); A is right
    # with probability p_i and B with p_i + 0.10, so the true paired delta is exactly 0.10 and A and
    # B are correlated through p_i, as two systems on one suite are. A 95% interval should contain
    # 0.10 in about 95% of suites. With 300 suites the Monte Carlo standard error of a coverage near
    # 0.95 is about 0.013, so [0.91, 0.99] is roughly +-3 standard errors. Measured: 0.950 here
    # (0.952 over 2000 suites with n_boot 2000, same design, another seed).
    rng = np.random.default_rng(6)
    n_sets, n_examples, true_delta = 300, 150, 0.10
    covered = 0
    for s in range(n_sets):
        p = rng.uniform(0.2, 0.8, size=n_examples)
        a = (rng.random(n_examples) < p).astype(float)
        b = (rng.random(n_examples) < p + true_delta).astype(float)
        r = paired_bootstrap(a, b, n_boot=1000, seed=s)
        covered += r["low"] <= true_delta <= r["high"]
    coverage = covered / n_sets
    assert 0.91 <= coverage <= 0.99, coverage
