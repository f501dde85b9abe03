"""Confidence intervals and paired significance tests: the statistics behind Tailor's numbers.

`tailor eval` reports each metric as a mean with `mean_ci`; `tailor compare`, `tailor rag eval` and
the ladder compare two systems scored on the same examples with `paired_bootstrap` (interval on
the difference), `paired_permutation` (sign-flip test) or `mcnemar` (0/1 correctness). Pairing is
the point: both systems see the same examples in the same order, so per-example difficulty cancels
and the intervals are far tighter than comparing two independent means.

Everything is plain numpy (plus the standard library for the normal, binomial and chi-square tails),
seeded, so a rerun prints the same interval. numpy is imported inside the functions to keep
`tailor --help` fast.
"""

from __future__ import annotations

import math
from statistics import NormalDist

# Bootstrap resamples are drawn in blocks so that 10k resamples of a large suite never hold more
# than this many indices in memory at once (~32 MB of int64).
_BLOCK_ELEMENTS = 4_000_000
# Above this many non-zero differences the sign-flip test samples instead of enumerating 2^n signs.
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


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")


def _is_binary(arr) -> bool:
    import numpy as np

    return bool(np.all((arr == 0) | (arr == 1)))


def _bootstrap_means(values, n_boot: int, seed: int):
    """Means of `n_boot` resamples (with replacement) of `values`, drawn in bounded blocks."""
    import numpy as np

    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = values.size
    block = max(1, _BLOCK_ELEMENTS // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, block):
        stop = min(start + block, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> dict:
    """Wilson score interval for a proportion.

    Unlike the normal ("Wald") interval it stays inside [0, 1] and keeps close to nominal coverage
    for small n and for accuracies near 0 or 1, which is where eval suites often sit.

    >>> r = wilson_ci(8, 10)
    >>> round(r["low"], 3), round(r["high"], 3)
    (0.49, 0.943)
    """
    _check_confidence(confidence)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return {"mean": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half), "n": n}


def mean_ci(values, confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> dict:
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
    import numpy as np

    _check_confidence(confidence)
    arr = _as_scores(values, "values")
    if _is_binary(arr):
        return {**wilson_ci(int(arr.sum()), arr.size, confidence), "method": "wilson"}
    means = _bootstrap_means(arr, n_boot, seed)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"mean": float(arr.mean()), "low": float(low), "high": float(high), "n": int(arr.size),
            "method": "bootstrap"}


def paired_bootstrap(a, b, n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Paired bootstrap of delta = mean(b) - mean(a) over the same examples.

    Example indices are resampled jointly (which is resampling the per-example differences
    b[i] - a[i]), and the interval is the percentile interval of the resampled deltas.

    The two-sided p-value inverts that interval: p = 2 * min(P*(delta* <= 0), P*(delta* >= 0)),
    the smallest alpha at which the (1 - alpha) percentile interval would exclude 0. Each tail
    count gets +1 in numerator and denominator so p is never exactly 0 from a finite number of
    resamples, and p is capped at 1 (identical systems give delta 0 and p 1).

    >>> r = paired_bootstrap([0, 1, 0, 1, 0, 0], [1, 1, 1, 1, 0, 1], n_boot=2000)
    >>> round(r["delta"], 3), r["n"]
    (0.5, 6)
    """
    import numpy as np

    _check_confidence(confidence)
    a, b = _as_pair(a, b)
    diff = b - a
    deltas = _bootstrap_means(diff, n_boot, seed)
    alpha = 1 - confidence
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    below = (int(np.count_nonzero(deltas <= 0)) + 1) / (n_boot + 1)
    above = (int(np.count_nonzero(deltas >= 0)) + 1) / (n_boot + 1)
    return {"delta": float(diff.mean()), "low": float(low), "high": float(high),
            "p_value": float(min(1.0, 2 * min(below, above))), "n": int(diff.size)}


def paired_permutation(a, b, n_perm: int = 10_000, seed: int = 0) -> dict:
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

    a, b = _as_pair(a, b)
    diff = b - a
    n = diff.size
    observed = abs(diff.mean())
    # Tolerate float rounding so that a pattern equal to the observed one counts as "as extreme".
    tol = 1e-12 * max(1.0, float(np.abs(diff).max()))
    nonzero = diff[diff != 0]
    m = nonzero.size
    if m == 0:
        return {"delta": 0.0, "p_value": 1.0, "n": int(n)}
    if m <= _EXACT_PERMUTATION_MAX_N:
        codes = np.arange(2**m)[:, None]
        signs = 1 - 2 * ((codes >> np.arange(m)) & 1)
        stats = np.abs(signs @ nonzero) / n
        p = float(np.count_nonzero(stats >= observed - tol) / stats.size)
    else:
        if n_perm < 1:
            raise ValueError(f"n_perm must be at least 1, got {n_perm}")
        rng = np.random.default_rng(seed)
        block = max(1, _BLOCK_ELEMENTS // m)
        hits = 0
        for start in range(0, n_perm, block):
            rows = min(block, n_perm - start)
            signs = rng.choice(np.array([-1.0, 1.0]), size=(rows, m))
            hits += int(np.count_nonzero(np.abs(signs @ nonzero) / n >= observed - tol))
        p = (hits + 1) / (n_perm + 1)
    return {"delta": float(diff.mean()), "p_value": min(1.0, p), "n": int(n)}


def mcnemar(a_correct, b_correct) -> dict:
    """McNemar's test for two systems' 0/1 correctness on the same examples.

    b01 counts examples that A got wrong and B got right, b10 the reverse; only these discordant
    pairs carry evidence. With fewer than 25 of them the exact two-sided binomial test
    (b01 ~ Binomial(b01 + b10, 1/2)) is used and `statistic` is min(b01, b10); otherwise the
    chi-square statistic with continuity correction, max(0, |b01 - b10| - 1)^2 / (b01 + b10),
    on 1 degree of freedom.

    >>> r = mcnemar([1, 1, 0, 0, 1], [1, 0, 1, 1, 1])
    >>> r["b01"], r["b10"], r["method"]
    (2, 1, 'exact')
    """
    import numpy as np

    a, b = _as_pair(a_correct, b_correct)
    if not (_is_binary(a) and _is_binary(b)):
        raise ValueError("mcnemar needs 0/1 (or bool) correctness per example")
    a, b = a.astype(bool), b.astype(bool)
    b01 = int(np.count_nonzero(~a & b))
    b10 = int(np.count_nonzero(a & ~b))
    discordant = b01 + b10
    if discordant < _MCNEMAR_EXACT_BELOW:
        k = min(b01, b10)
        # Binomial(n, 1/2) is symmetric, so the two-sided p-value is twice the lower tail.
        tail = sum(math.comb(discordant, i) for i in range(k + 1)) / 2**discordant
        return {"b01": b01, "b10": b10, "statistic": float(k), "p_value": min(1.0, 2 * tail),
                "method": "exact"}
    statistic = max(0, abs(b01 - b10) - 1) ** 2 / discordant
    # The chi-square(1) survival function is erfc(sqrt(x / 2)).
    p = math.erfc(math.sqrt(statistic / 2))
    return {"b01": b01, "b10": b10, "statistic": float(statistic), "p_value": p,
            "method": "chi2-corrected"}
