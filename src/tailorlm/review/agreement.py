"""Agreement between raters, and between a judge and people: how far a rating can be trusted.

- `cohen_kappa`: two raters on the same items (quadratic-weighted for 1-5 ratings, unweighted for
  preferences), by scikit-learn's `cohen_kappa_score`;
- `krippendorff_alpha`: any number of raters, missing ratings allowed, by the `krippendorff`
  package (ordinal for 1-5 ratings, nominal for preferences);
- `spearman`: rank correlation of a judge's scores with the people's, by scipy, with a
  Fisher-z interval.

Landis and Koch's bands read a kappa; Krippendorff's own rule reads alpha: >= 0.8 reliable,
0.667-0.8 tentative, below that not reliable.
"""

from __future__ import annotations

import math
from statistics import NormalDist

# Krippendorff (2004), Content Analysis, 12.6: data with alpha below 0.667 should not be relied on.
ALPHA_TENTATIVE, ALPHA_RELIABLE = 0.667, 0.8
# Landis & Koch (1977): below 0.4 a kappa is "fair" at best; a judge agreeing less than that with people is too weak.
KAPPA_MODERATE = 0.4


def kappa_band(kappa: float | None) -> str | None:
    if kappa is None:
        return None
    for bound, band in ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if kappa <= bound:
            return band
    return "almost perfect"


def cohen_kappa(a: list, b: list, weights: str | None = None) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when undefined (no variation).

    >>> round(cohen_kappa([1, 2, 3, 4, 5], [1, 2, 3, 4, 4], "quadratic"), 3)
    0.941
    """
    from sklearn.metrics import cohen_kappa_score

    if len(a) != len(b):
        raise ValueError(f"kappa needs the same items from both raters ({len(a)} vs {len(b)})")
    if len(a) < 2 or len(set(a) | set(b)) < 2:
        return None
    value = float(cohen_kappa_score(a, b, weights=weights))
    return None if math.isnan(value) else value


def krippendorff_alpha(units: list[list], level: str = "ordinal") -> float | None:
    """Krippendorff's alpha for `units`: one row per rater, one column per item, None where a rater
    did not rate; values are numbers (ratings) or strings (preferences, read as nominal).

    >>> round(krippendorff_alpha([[1, 2, 3, None], [1, 2, 4, 4]], "interval"), 3)
    0.878
    """
    import krippendorff
    import numpy as np

    if len(units) < 2 or not units[0]:
        return None
    codes: dict = {}
    rows = []
    for row in units:
        if level == "nominal":
            rows.append([np.nan if v is None else codes.setdefault(v, len(codes)) for v in row])
        else:
            rows.append([np.nan if v is None else float(v) for v in row])
    data = np.array(rows, dtype=float)
    paired = np.sum(np.sum(~np.isnan(data), axis=0) >= 2)
    values = np.unique(data[~np.isnan(data)])
    if paired == 0 or values.size < 2:
        return None  # alpha is undefined without two ratings of one item, or without any variation
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level, value_domain=values))


def alpha_reading(alpha: float | None) -> str | None:
    if alpha is None:
        return None
    if alpha >= ALPHA_RELIABLE:
        return "reliable"
    return "tentative" if alpha >= ALPHA_TENTATIVE else "not reliable"


def spearman(x: list[float], y: list[float], confidence: float = 0.95) -> dict | None:
    """Spearman's rho with a Fisher-z interval (standard error 1.06/sqrt(n-3), Fieller et al. 1957).

    >>> spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])["rho"]
    0.8
    """
    from scipy.stats import spearmanr

    n = len(x)
    if n < 4 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    rho = float(spearmanr(x, y).statistic)
    z = NormalDist().inv_cdf(0.5 + confidence / 2) * 1.06 / math.sqrt(n - 3)
    centre = math.atanh(max(min(rho, 0.999999), -0.999999))
    return {"rho": round(rho, 6), "low": math.tanh(centre - z), "high": math.tanh(centre + z), "n": n,
            "method": "Spearman, Fisher-z interval (Fieller, Hartley and Pearson 1957)"}
