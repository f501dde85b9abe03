"""Tests for eval/stats.py and eval/retrieval.py against hand-computed values and simulations."""

import itertools
import math

import numpy as np
import pytest

from tailorlm.eval.retrieval import (
    mrr,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    score_queries,
)
from tailorlm.eval.metrics import label_stats, macro_f1_from_stats
from tailorlm.eval.stats import (
    corpus_ci,
    mcnemar,
    mean_ci,
    paired_bootstrap,
    paired_corpus_bootstrap,
    paired_permutation,
    paired_randomization,
    paired_sample_size,
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


# ---- scipy and scikit-learn agree --------------------------------------------------------------


def test_mean_ci_is_scipys_percentile_bootstrap():
    from scipy.stats import bootstrap

    values = np.random.default_rng(7).normal(0.5, 0.2, size=50)
    ours = mean_ci(values, n_boot=2000, seed=3)
    theirs = bootstrap((values,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(3))
    assert ours["low"] == pytest.approx(theirs.confidence_interval.low, abs=1e-12)
    assert ours["high"] == pytest.approx(theirs.confidence_interval.high, abs=1e-12)


def test_wilson_is_scipys_binomtest_interval():
    from scipy.stats import binomtest

    for k, n in ((0, 12), (3, 64), (50, 64), (64, 64)):
        ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert (wilson_ci(k, n)["low"], wilson_ci(k, n)["high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)


def _labelled(n, seed):
    rng = np.random.default_rng(seed)
    labels = ["a", "b", "c", "d"]
    refs = list(rng.choice(labels, size=n, p=[0.4, 0.3, 0.2, 0.1]))
    preds = [r if rng.random() < 0.7 else (None if rng.random() < 0.3 else rng.choice(labels)) for r in refs]
    return labels, preds, refs


def test_macro_f1_interval_is_the_bootstrap_of_sklearns_macro_f1():
    # scipy's own bootstrap, resampling (ref, pred) pairs and calling scikit-learn on every resample,
    # draws the same indices from the same seed: both intervals must agree to rounding.
    from scipy.stats import bootstrap
    from sklearn.metrics import f1_score

    labels, preds, refs = _labelled(60, 8)
    y_pred = np.array(["none" if p is None else p for p in preds])
    ours = corpus_ci(label_stats(preds, refs, labels), macro_f1_from_stats, n_boot=300, seed=5)
    theirs = bootstrap((np.array(refs), y_pred), lambda r, p: f1_score(r, p, labels=labels, average="macro",
                                                                           zero_division=0),
                       paired=True, vectorized=False, n_resamples=300, method="percentile", rng=np.random.default_rng(5))
    assert ours["mean"] == pytest.approx(f1_score(refs, y_pred, labels=labels, average="macro", zero_division=0))
    assert ours["low"] == pytest.approx(theirs.confidence_interval.low, abs=1e-12)
    assert ours["high"] == pytest.approx(theirs.confidence_interval.high, abs=1e-12)


def test_paired_corpus_tests_against_brute_force():
    from sklearn.metrics import f1_score

    labels = ["a", "b"]
    refs = ["a", "a", "b", "b", "a", "b"]
    pa = ["a", "b", "b", "a", "a", "a"]
    pb = ["a", "a", "b", "b", "b", "b"]

    def f1(p, r):
        return f1_score(r, p, labels=labels, average="macro", zero_division=0)

    sa, sb = label_stats(pa, refs, labels), label_stats(pb, refs, labels)
    boot = paired_corpus_bootstrap(sa, sb, macro_f1_from_stats, n_boot=500)
    assert boot["delta"] == pytest.approx(f1(pb, refs) - f1(pa, refs))
    assert boot["low"] <= boot["delta"] <= boot["high"]
    # Approximate randomization over 6 examples: 2^6 = 64 swaps, so scipy enumerates them all. By brute force:
    observed = abs(f1(pb, refs) - f1(pa, refs))
    extreme = 0
    for swap in itertools.product([False, True], repeat=6):
        xa = [b if s else a for a, b, s in zip(pa, pb, swap)]
        xb = [a if s else b for a, b, s in zip(pa, pb, swap)]
        extreme += abs(f1(xb, refs) - f1(xa, refs)) >= observed - 1e-12
    assert paired_randomization(sa, sb, macro_f1_from_stats, n_perm=10_000)["p_value"] == pytest.approx(extreme / 64)


def test_macro_f1_bootstrap_coverage_on_simulated_data():
    # 400 simulated suites of 200 examples from one population: 4 labels with priors (.4, .3, .2, .1),
    # a classifier right with probability .7, else answering no label (30%) or a uniform label. The
    # population macro-F1 is computed exactly from the joint probabilities of (reference, prediction).
    # A 95% percentile interval (300 resamples each) should contain it in about 95% of suites; the
    # Monte Carlo standard error of a coverage near 0.95 over 400 suites is 0.011, and macro-F1 is a
    # ratio estimator whose small-sample bias makes percentile intervals run a little under nominal,
    # so the band is [0.90, 0.98] (about -4.5 and +3 standard errors). Measured: 0.960 with this seed.
    priors, p_right, p_none = np.array([0.4, 0.3, 0.2, 0.1]), 0.7, 0.3
    wrong_label = (1 - p_right) * (1 - p_none) / 4  # a uniform wrong answer may hit the right label
    joint = np.outer(priors, np.full(4, wrong_label)) + np.diag(priors * p_right)  # P(ref = i, pred = j)
    tp = np.diag(joint)
    true_f1 = np.mean(2 * tp / (2 * tp + (joint.sum(axis=0) - tp) + (priors - tp)))
    labels = ["a", "b", "c", "d"]
    covered = 0
    for s in range(400):
        _, preds, refs = _labelled(200, 1000 + s)
        r = corpus_ci(label_stats(preds, refs, labels), macro_f1_from_stats, n_boot=300, seed=s)
        covered += r["low"] <= true_f1 <= r["high"]
    assert 0.90 <= covered / 400 <= 0.98, covered / 400


# ---- power ---------------------------------------------------------------------------------------


def test_paired_sample_size_by_hand():
    # Connor (1987) for psi = 0.3, delta = 0.05: n0 = (1.95996 sqrt(.3) + 0.84162 sqrt(.2975))^2 / .0025 = 939.5;
    # the continuity correction gives n0 / 4 * (1 + sqrt(1 + 4 / (939.5 * .05)))^2 = 979.1 -> 980.
    za, zb = 1.959964, 0.841621
    n0 = (za * math.sqrt(0.3) + zb * math.sqrt(0.3 - 0.05**2)) ** 2 / 0.05**2
    assert n0 == pytest.approx(939.5, abs=0.05)
    assert paired_sample_size(0.3, 0.05) == math.ceil(n0 / 4 * (1 + math.sqrt(1 + 4 / (n0 * 0.05))) ** 2) == 980
    assert paired_sample_size(0.3, -0.05) == 980  # the sign of the difference does not matter
    assert paired_sample_size(0.3, 0.0) is None
    # Less disagreement, fewer examples: two systems that rarely disagree are easy to tell apart.
    assert paired_sample_size(0.1, 0.05) < paired_sample_size(0.3, 0.05)
    # A difference of delta needs at least delta discordance; below that psi is raised to delta.
    assert paired_sample_size(0.01, 0.05) == paired_sample_size(0.05, 0.05)


def test_paired_sample_size_gives_80_percent_power_in_simulation():
    # 1000 simulated suites of the size the formula asks for (psi 0.4, delta 0.15 -> 151): B is right
    # where A is wrong on 27.5% of examples and the reverse on 12.5%. McNemar (as `mcnemar` runs it)
    # should reject in about 80% of them; the Monte Carlo standard error is 0.013, so [0.76, 0.84] is
    # +-3 standard errors. At 80% of that size the power must fall clearly short. Measured: 0.816, 0.700.
    n = paired_sample_size(0.4, 0.15)
    assert n == 151
    rng = np.random.default_rng(9)

    def power_at(size):
        rejected = 0
        for _ in range(1000):
            kind = rng.choice(3, size=size, p=[0.275, 0.125, 0.6])  # 0: only B right, 1: only A right, 2: agree
            a, b = (kind == 1).astype(float), (kind == 0).astype(float)
            rejected += mcnemar(a, b)["p_value"] < 0.05
        return rejected / 1000

    assert 0.76 <= power_at(n) <= 0.84
    assert power_at(int(0.8 * n)) < 0.76
