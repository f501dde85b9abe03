"""Eval statistics: how long Tailor's intervals and paired tests take, against baselines in the same run.

    python benchmarks/stats.py [--examples 1000] [--resamples 10000] [--repeats 3] [--json]

Two timings, medians of `--repeats`:

- the paired bootstrap of a mean difference (scipy.stats.bootstrap over example indices, as
  `eval/stats.py` runs it) against the plain numpy bootstrap it replaced (one index matrix per block,
  mean per row);
- the bootstrap interval of macro-F1 from per-example counts (`corpus_ci`, one matrix product per
  batch) against calling scikit-learn's f1_score on each resample (scipy.stats.bootstrap with a
  non-vectorized statistic), on `--examples` examples of 8 labels. The scikit-learn side runs a
  tenth of the resamples and is scaled up, so the benchmark stays short.

This was a timed test in tests/test_eval_stats.py (paired bootstrap of 1000 examples under 2 s);
timings live here instead, where a busy machine slows both sides alike.
"""

import argparse
import json
import platform
import statistics
import time

import numpy as np


def median_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def numpy_paired_bootstrap(a, b, n_boot: int, seed: int = 0):
    """The previous implementation: resampled index blocks, the mean difference per row, numpy quantiles."""
    rng = np.random.default_rng(seed)
    diff = b - a
    n = diff.size
    block = max(1, 4_000_000 // n)
    deltas = np.empty(n_boot)
    for start in range(0, n_boot, block):
        stop = min(start + block, n_boot)
        deltas[start:stop] = diff[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return np.quantile(deltas, [0.025, 0.975])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from scipy.stats import bootstrap
    from sklearn.metrics import f1_score

    from tailorlm.eval.metrics import label_stats, macro_f1_from_stats
    from tailorlm.eval.stats import corpus_ci, paired_bootstrap

    rng = np.random.default_rng(5)
    n, n_boot = args.examples, args.resamples
    a, b = rng.random(n), rng.random(n)
    paired_bootstrap(a[:10], b[:10], n_boot=10)  # warm scipy and numpy up
    ours = median_of(lambda: paired_bootstrap(a, b, n_boot=n_boot), args.repeats)
    plain = median_of(lambda: numpy_paired_bootstrap(a, b, n_boot), args.repeats)

    labels = [f"l{i}" for i in range(8)]
    refs = list(rng.choice(labels, size=n))
    preds = [r if rng.random() < 0.6 else rng.choice(labels) for r in refs]
    stats = label_stats(preds, refs, labels)
    corpus = median_of(lambda: corpus_ci(stats, macro_f1_from_stats, n_boot=n_boot), args.repeats)
    few = max(1, n_boot // 10)
    y_true, y_pred = np.array(refs), np.array(preds)
    sklearn_side = median_of(lambda: bootstrap(
        (y_true, y_pred), lambda r, p: f1_score(r, p, labels=labels, average="macro", zero_division=0), paired=True,
        vectorized=False, n_resamples=few, method="percentile", rng=np.random.default_rng(0)), 1) * n_boot / few

    result = {"examples": n, "resamples": n_boot, "repeats": args.repeats, "machine": platform.machine(),
              "paired_bootstrap_s": ours, "numpy_baseline_s": plain, "paired_bootstrap_ratio": ours / plain,
              "macro_f1_ci_s": corpus, "sklearn_per_resample_s": sklearn_side, "macro_f1_speedup": sklearn_side / corpus}
    if args.json:
        print(json.dumps(result))
        return
    print(f"paired bootstrap, {n} examples x {n_boot} resamples: {ours:.3f} s (scipy.stats.bootstrap) vs "
          f"{plain:.3f} s (plain numpy): ratio {ours / plain:.2f}")
    print(f"macro-F1 interval, {n} examples, 8 labels, {n_boot} resamples: {corpus:.3f} s from counts vs "
          f"{sklearn_side:.1f} s calling f1_score per resample (scaled from {few}): {sklearn_side / corpus:.0f}x faster")


if __name__ == "__main__":
    main()
