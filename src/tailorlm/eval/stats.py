"""Confidence intervals, paired significance tests and sample sizes: the statistics behind Tailor's numbers.

`tailor eval` reports each metric's point value with an interval: `mean_ci` for metrics that are a
mean of per-example scores (Wilson for 0/1 scores, a bootstrap otherwise), `corpus_ci` for corpus
metrics (macro-F1, micro-F1, BLEU, chrF, calibration error), whose value is a function of per-example
counts summed over the suite and is not the mean of anything. `tailor compare`, the gate and the
ladder compare two systems scored on the same examples: `paired_bootstrap` / `paired_corpus_bootstrap`
(interval on the difference), `mcnemar` (0/1 correctness), `paired_permutation` (sign flips of mean
differences) and `paired_randomization` (swapping the two systems' outputs per example, for corpus
metrics). Pairing is the point: both systems see the same examples in the same order, so per-example
difficulty cancels and the intervals are far tighter than comparing two independent means.
`paired_sample_size` says how many examples a paired comparison needs to detect a given difference.

The resampling runs on scipy.stats (`bootstrap` with the percentile method, `permutation_test`,
`binomtest`), seeded, so a rerun prints the same interval. numpy and scipy are imported inside the
functions to keep `tailor --help` fast.
"""

from __future__ import annotations

import math
from statistics import NormalDist

N_BOOT = 10_000  # resamples for every interval (the Monte Carlo error of a 95% percentile end is ~0.1 point)
# Resamples are evaluated in batches so that 10k resamples of a large suite never hold more than
# this many indices in memory at once (~32 MB of int64).
_BLOCK_ELEMENTS = 4_000_000
# Below this many non-zero differences the sign-flip test enumerates all 2^m signs (exact).
_EXACT_PERMUTATION_MAX_N = 16
# McNemar: the exact binomial test is used below this many discordant pairs, as is conventional.
_MCNEMAR_EXACT_BELOW = 25


def _as_scores(values, name: str):
    import numpy as np

    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty: a mean or a comparison needs at least one example")
    if not np.all(np.isfinite(arr)):
        # A failed example must be scored as wrong (0), never as NaN, or it silently drops out.
        raise ValueError(f"{name} contains NaN or infinite scores; score failed examples as 0")
    return arr


def _as_pair(a, b):
    a, b = _as_scores(a, "a"), _as_scores(b, "b")
    if a.size != b.size:
        raise ValueError(
            f"paired inputs differ in length ({a.size} vs {b.size}); both systems must be scored "
            "on the same examples in the same order"
        )
    return a, b


def _as_stats(stats, name: str):
    import numpy as np

    arr = np.asarray(stats, dtype=float)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be one row of counts per example, at least one example")
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")


def _is_binary(arr) -> bool:
    import numpy as np

    return bool(np.all((arr == 0) | (arr == 1)))


def _resample_counts(idx, rows: int):
    """How often each of `rows` rows appears in each resample: (batch, m) indices -> (batch, rows) counts."""
    import numpy as np

    idx = np.asarray(idx, dtype=np.intp)
    idx = idx.reshape(-1, idx.shape[-1])
    offset = np.arange(idx.shape[0])[:, None] * rows
    return np.bincount((idx + offset).ravel(), minlength=idx.shape[0] * rows).reshape(idx.shape[0], rows).astype(float)


def _bootstrap(n: int, statistic, n_boot: int, seed: int, confidence: float, values=None):
    """scipy's percentile bootstrap over examples: (low, high, bootstrap distribution).

    `statistic(counts)` maps (batch, n) resample counts to (batch,) values, so any corpus value that
    is a function of summed per-example counts is resampled with one matrix product per batch. With
    `values` (one score per example) the resampled means are taken directly, which is faster; both
    draw the same resamples from the same seed.
    """
    import numpy as np
    from scipy.stats import bootstrap

    _check_confidence(confidence)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if n == 1:  # scipy needs two observations; one example has nothing to resample
        value = float(statistic(np.ones((1, 1)))[0])
        return value, value, np.full(n_boot, value)
    if values is not None:
        data, stat = (values,), lambda x, axis: x.mean(axis=axis)
    else:
        data, stat = (np.arange(n),), lambda idx, axis: statistic(_resample_counts(idx, n))
    result = bootstrap(data, stat, vectorized=True, n_resamples=n_boot, batch=max(1, _BLOCK_ELEMENTS // n),
                       method="percentile", confidence_level=confidence, rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return float(ci.low), float(ci.high), result.bootstrap_distribution


def _bootstrap_p(deltas) -> float:
    """Two-sided p-value of a bootstrap distribution of differences, by inverting its percentile interval.

    p = 2 * min(P*(delta* <= 0), P*(delta* >= 0)): the smallest alpha at which the (1 - alpha)
    interval would exclude 0. Each tail count gets +1 in numerator and denominator so p is never
    exactly 0 from a finite number of resamples, and p is capped at 1 (identical systems give 1).
    """
    import numpy as np

    n = deltas.size
    below = (int(np.count_nonzero(deltas <= 0)) + 1) / (n + 1)
    above = (int(np.count_nonzero(deltas >= 0)) + 1) / (n + 1)
    return float(min(1.0, 2 * min(below, above)))


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> dict:
    """Wilson score interval for a proportion (scipy's `binomtest(...).proportion_ci(method="wilson")`).

    Unlike the normal ("Wald") interval it stays inside [0, 1] and keeps close to nominal coverage
    for small n and for accuracies near 0 or 1, which is where eval suites often sit.

    >>> r = wilson_ci(8, 10)
    >>> round(r["low"], 3), round(r["high"], 3)
    (0.49, 0.943)
    """
    from scipy.stats import binomtest

    _check_confidence(confidence)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return {"mean": successes / n, "low": float(ci.low), "high": float(ci.high), "n": n}


def mean_ci(values, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Mean of per-example scores with a confidence interval.

    When every value is 0 or 1 (accuracy, exact match) the Wilson score interval is used: it is
    closed-form, deterministic and better calibrated than a bootstrap for small n or accuracies near
    0/1 (a bootstrap of 10/10 correct gives the useless interval [1, 1]). Otherwise a percentile
    bootstrap of the mean. The `method` key says which one was used.

    >>> mean_ci([1, 1, 1, 1, 1, 1, 1, 1, 0, 0])["method"]
    'wilson'
    >>> r = mean_ci([0.2, 0.4, 0.9, 0.7])
    >>> r["low"] <= r["mean"] <= r["high"], r["n"]
    (True, 4)
    """
    _check_confidence(confidence)
    arr = _as_scores(values, "values")
    if _is_binary(arr):
        return {**wilson_ci(int(arr.sum()), arr.size, confidence), "method": "wilson"}
    low, high, _ = _bootstrap(arr.size, lambda counts: counts @ arr / arr.size, n_boot, seed, confidence, arr)
    return {"mean": float(arr.mean()), "low": low, "high": high, "n": int(arr.size), "method": "bootstrap"}


def corpus_ci(stats, value, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """A corpus metric's value on the whole suite, with a percentile bootstrap interval over examples.

    `stats` holds one row of counts per example (for macro-F1: true positives, false positives and
    false negatives per label); `value(summed)` turns counts summed over examples, shape (..., k),
    into the metric, shape (...). Each resample draws examples with replacement and recomputes the
    corpus value from its summed counts, which is the bootstrap of the corpus value itself.

    >>> import numpy as np
    >>> r = corpus_ci([[1, 1], [0, 1], [1, 1]], lambda s: s[..., 0] / s[..., 1])
    >>> round(r["mean"], 4), r["n"], r["method"]
    (0.6667, 3, 'bootstrap')
    """
    arr = _as_stats(stats, "stats")
    point = float(value(arr.sum(axis=0)))
    low, high, _ = _bootstrap(arr.shape[0], lambda counts: value(counts @ arr), n_boot, seed, confidence)
    return {"mean": point, "low": low, "high": high, "n": int(arr.shape[0]), "method": "bootstrap"}


def paired_bootstrap(a, b, n_boot: int = N_BOOT, seed: int = 0, confidence: float = 0.95) -> dict:
    """Paired bootstrap of delta = mean(b) - mean(a) over the same examples.

    Example indices are resampled jointly (which is resampling the per-example differences
    b[i] - a[i]), and the interval is the percentile interval of the resampled deltas; `p_value`
    inverts it (see `_bootstrap_p`).

    >>> r = paired_bootstrap([0, 1, 0, 1, 0, 0], [1, 1, 1, 1, 0, 1], n_boot=2000)
    >>> round(r["delta"], 3), r["n"]
    (0.5, 6)
    """
    a, b = _as_pair(a, b)
    diff = b - a
    low, high, deltas = _bootstrap(diff.size, lambda counts: counts @ diff / diff.size, n_boot, seed, confidence, diff)
    return {"delta": float(diff.mean()), "low": low, "high": high, "p_value": _bootstrap_p(deltas), "n": int(diff.size)}


def paired_corpus_bootstrap(stats_a, stats_b, value, n_boot: int = N_BOOT, seed: int = 0,
                            confidence: float = 0.95) -> dict:
    """Paired bootstrap of delta = value(B) - value(A) for a corpus metric, on the same examples.

    Each resample draws one set of example indices and recomputes both systems' corpus values on
    it, so the interval is on the difference of corpus values (the paired bootstrap of Koehn 2004
    for BLEU, applied to any metric `corpus_ci` takes).
    """
    sa, sb = _as_stats(stats_a, "stats_a"), _as_stats(stats_b, "stats_b")
    if sa.shape != sb.shape:
        raise ValueError(f"paired inputs differ in shape ({sa.shape} vs {sb.shape}); score the same examples")
    delta = float(value(sb.sum(axis=0)) - value(sa.sum(axis=0)))
    low, high, deltas = _bootstrap(sa.shape[0], lambda counts: value(counts @ sb) - value(counts @ sa), n_boot,
                                   seed, confidence)
    return {"delta": delta, "low": low, "high": high, "p_value": _bootstrap_p(deltas), "n": int(sa.shape[0])}


def paired_randomization(stats_a, stats_b, value, n_perm: int = N_BOOT, seed: int = 0) -> dict:
    """Paired approximate randomization test of a corpus metric's difference (Yeh 2000; Riezler & Maxwell 2005).

    Under the null the two systems' outputs are exchangeable on each example, so each example's
    counts are swapped between A and B at random and the corpus values recomputed. p is the share
    of swaps whose |value(B) - value(A)| is at least the observed one: exact when 2^n swaps are at
    most `n_perm`, else (hits + 1) / (n_perm + 1) (scipy's `permutation_test`, permutation_type
    "samples").
    """
    import numpy as np
    from scipy.stats import permutation_test

    sa, sb = _as_stats(stats_a, "stats_a"), _as_stats(stats_b, "stats_b")
    if sa.shape != sb.shape:
        raise ValueError(f"paired inputs differ in shape ({sa.shape} vs {sb.shape}); score the same examples")
    n = sa.shape[0]
    delta = float(value(sb.sum(axis=0)) - value(sa.sum(axis=0)))
    if n == 1:  # one example: both swaps give the same |delta|
        return {"delta": delta, "p_value": 1.0, "n": 1}
    both = np.vstack([sa, sb])

    def statistic(x, y, axis):
        # x and y index rows of `both`: A's row i is i, B's is n + i; a swap exchanges them.
        return np.abs(value(_resample_counts(y, 2 * n) @ both) - value(_resample_counts(x, 2 * n) @ both))

    result = permutation_test((np.arange(n), np.arange(n) + n), statistic, permutation_type="samples",
                              alternative="greater", n_resamples=n_perm, vectorized=True,
                              batch=max(1, _BLOCK_ELEMENTS // (2 * n)), rng=np.random.default_rng(seed))
    return {"delta": delta, "p_value": float(min(1.0, result.pvalue)), "n": int(n)}


def paired_permutation(a, b, n_perm: int = N_BOOT, seed: int = 0) -> dict:
    """Sign-flip permutation test of delta = mean(b) - mean(a) on paired scores.

    Under the null the two systems are exchangeable on each example, so each difference b[i] - a[i]
    is as likely to have either sign. The p-value is the fraction of sign assignments whose
    |mean difference| is at least the observed one. Zero differences cannot change the statistic,
    so when at most 16 differences are non-zero all 2^m sign patterns are enumerated (exact);
    otherwise `n_perm` random patterns are drawn and p = (hits + 1) / (n_perm + 1).

    >>> paired_permutation([0, 0, 0], [1, 1, 1])["p_value"]  # 2 of 8 patterns are as extreme
    0.25
    """
    import numpy as np
    from scipy.stats import permutation_test

    a, b = _as_pair(a, b)
    diff = b - a
    n = diff.size
    nonzero = diff[diff != 0]
    m = nonzero.size
    if m <= 1:  # no difference, or one whose two signs are equally extreme
        return {"delta": float(diff.mean()), "p_value": 1.0, "n": int(n)}
    if n_perm < 1:
        raise ValueError(f"n_perm must be at least 1, got {n_perm}")
    result = permutation_test((nonzero,), lambda x, axis: np.abs(x.sum(axis=axis)) / n, permutation_type="samples",
                              alternative="greater", vectorized=True, batch=max(1, _BLOCK_ELEMENTS // m),
                              n_resamples=2**m if m <= _EXACT_PERMUTATION_MAX_N else n_perm,
                              rng=np.random.default_rng(seed))
    return {"delta": float(diff.mean()), "p_value": float(min(1.0, result.pvalue)), "n": int(n)}


def mcnemar(a_correct, b_correct) -> dict:
    """McNemar's test for two systems' 0/1 correctness on the same examples.

    b01 counts examples that A got wrong and B got right, b10 the reverse; only these discordant
    pairs carry evidence. With fewer than 25 of them the exact two-sided binomial test
    (b01 ~ Binomial(b01 + b10, 1/2), scipy's `binomtest`) is used and `statistic` is min(b01, b10);
    otherwise the chi-square statistic with continuity correction, max(0, |b01 - b10| - 1)^2 /
    (b01 + b10), on 1 degree of freedom.

    >>> r = mcnemar([1, 1, 0, 0, 1], [1, 0, 1, 1, 1])
    >>> r["b01"], r["b10"], r["method"]
    (2, 1, 'exact')
    """
    import numpy as np
    from scipy.stats import binomtest, chi2

    a, b = _as_pair(a_correct, b_correct)
    if not (_is_binary(a) and _is_binary(b)):
        raise ValueError("mcnemar needs 0/1 (or bool) correctness per example")
    a, b = a.astype(bool), b.astype(bool)
    b01 = int(np.count_nonzero(~a & b))
    b10 = int(np.count_nonzero(a & ~b))
    discordant = b01 + b10
    if discordant < _MCNEMAR_EXACT_BELOW:
        p = binomtest(b01, discordant, 0.5).pvalue if discordant else 1.0
        return {"b01": b01, "b10": b10, "statistic": float(min(b01, b10)), "p_value": float(min(1.0, p)),
                "method": "exact"}
    statistic = max(0, abs(b01 - b10) - 1) ** 2 / discordant
    return {"b01": b01, "b10": b10, "statistic": float(statistic), "p_value": float(chi2.sf(statistic, df=1)),
            "method": "chi2-corrected"}


def paired_sample_size(discordance: float, delta: float, power: float = 0.8, alpha: float = 0.05) -> int | None:
    """Examples a paired 0/1 comparison needs for McNemar's test to detect `delta` with `power`.

    `discordance` is the share of examples the two systems disagree on (p01 + p10), `delta` the
    difference in accuracy to detect (p01 - p10). Connor (1987, Biometrics 43:207-211) gives, for the
    uncorrected McNemar test,

        n0 = (z_{1-alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2.

    `mcnemar` applies the continuity correction (|b01 - b10| - 1), which costs power; solving
    n delta - 1 = z_{1-alpha/2} sqrt(n psi) + z_{power} sqrt(n (psi - delta^2)) for n gives the same
    correction as Fleiss, Tytun & Ury (1980) give for two proportions:

        n = n0 / 4 * (1 + sqrt(1 + 4 / (n0 |delta|)))^2.

    A difference of delta needs at least |delta| discordance, so psi is raised to |delta| when the
    observed discordance is smaller. Returns None when delta is 0 (no sample size detects nothing).
    tests/test_eval_stats.py checks the result against simulated McNemar tests.

    >>> paired_sample_size(0.3, 0.05)
    980
    """
    _check_confidence(power)
    _check_confidence(1 - alpha)
    delta = abs(delta)
    if delta == 0:
        return None
    if not 0 <= discordance <= 1:
        raise ValueError(f"discordance must be between 0 and 1, got {discordance}")
    psi = max(discordance, delta)
    z_a, z_b = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    n0 = (z_a * math.sqrt(psi) + z_b * math.sqrt(max(0.0, psi - delta * delta))) ** 2 / delta**2
    return math.ceil(n0 / 4 * (1 + math.sqrt(1 + 4 / (n0 * delta))) ** 2 - 1e-9)
