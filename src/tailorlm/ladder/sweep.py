"""`train.sweep`: the ladder trains every combination of the listed settings and keeps the best on validation.

    rungs:
      - kind: sft
        train: {sweep: {learning_rate: [2e-4, 1e-3], lora_r: [8, 16]}}

Each candidate is a full training run with the rung's other settings (reused when it was trained
before, like any ladder model). It is scored as the rung would answer, on the dataset's validation
split, with the suite's primary metric (label-held for classification); where that metric cannot be
computed from the validation records, the lower best validation loss wins. The golden suite is
never read: choosing on it would make the ladder's number for this rung optimistic.
The record (every candidate's settings, score and model version) goes in the ladder's row.
"""

import itertools

from tailorlm.errors import TailorError

MAX_CANDIDATES = 16


def sweep_grid(sweep: dict | None) -> list[dict]:
    """Every combination of the sweep's values, in the order written.

    >>> sweep_grid({"learning_rate": [1e-4, 1e-3], "lora_r": [8]})
    [{'learning_rate': 0.0001, 'lora_r': 8}, {'learning_rate': 0.001, 'lora_r': 8}]
    """
    if not sweep:
        return []
    from tailorlm.train.config import TrainConfig

    if not isinstance(sweep, dict):
        raise TailorError("train.sweep must map setting names to lists of values, e.g. {learning_rate: [2e-4, 1e-3]}")
    unknown = [k for k in sweep if k not in TrainConfig.model_fields or k in ("method", "dataset", "sweep")]
    if unknown:
        raise TailorError(f"train.sweep: unknown training setting(s) {', '.join(map(str, unknown))}")
    values = {k: v if isinstance(v, list) else [v] for k, v in sweep.items()}
    empty = [k for k, v in values.items() if not v]
    if empty:
        raise TailorError(f"train.sweep: {', '.join(empty)} lists no values")
    grid = [dict(zip(values, combo)) for combo in itertools.product(*values.values())]
    if len(grid) > MAX_CANDIDATES:
        raise TailorError(f"train.sweep has {len(grid)} combinations; at most {MAX_CANDIDATES} (each is a training run)")
    return grid


def run_sweep(project, spec, settings: dict, dataset: str, grid: list[dict], pool, embedder, log,
              on_progress) -> tuple[dict, dict]:
    """Train and score every candidate; returns (the best model version, the sweep's record)."""
    from tailorlm.data.versions import load_records, resolve
    from tailorlm.eval.runner import LOWER_IS_BETTER, evaluate
    from tailorlm.eval.suite import suite_from_records
    from tailorlm.ladder.run import train_or_reuse
    from tailorlm.rungs.build import build_rung

    manifest = resolve(project, dataset)
    if not manifest["splits"].get("validation"):
        raise TailorError(f"train.sweep needs a validation split to choose on, and {dataset} has none; "
                          "set `data.split` so prepare keeps one (the golden suite is never used to choose)")
    validation = suite_from_records("validation", f"{manifest['id']}:validation", load_records(project, manifest, "validation"))
    metric = project.config.eval.metrics[0]
    by_metric = metric not in ("perplexity",) and not metric.startswith("judge_") and (
        metric not in ("accuracy", "macro_f1", "micro_f1") or all(e.labels for e in validation.examples))
    log(f"      {spec.label}: sweeping {len(grid)} settings, chosen on {len(validation.examples)} validation examples "
        f"by {metric if by_metric else 'validation loss'}")
    candidates = []
    for i, point in enumerate(grid, start=1):
        shown = ", ".join(f"{k}={v}" for k, v in point.items())
        version = train_or_reuse(project, {**settings, **point}, dataset, f"{spec.label} [{i}/{len(grid)}: {shown}]",
                                 log, on_progress)
        entry = {"settings": point, "model_version": version["id"],
                 "val_loss": version["metrics"].get("eval_loss_best"),
                 "train_seconds": version["metrics"].get("train_seconds")}
        if by_metric:
            rung = build_rung(project, spec, pool, embedder, version=version)
            report = evaluate(project, rung, validation, [metric], subject=f"{project.config.name}:{spec.label}-sweep")
            m = report["metrics"][metric]
            entry.update(score=m["mean"], low=m["low"], high=m["high"], report=report["id"])
        log(f"      {shown}: " + (f"{metric} {entry['score']:.3f}, " if by_metric else "")
            + (f"val loss {entry['val_loss']:.4f}" if entry["val_loss"] is not None else "no val loss"))
        candidates.append(entry)
    sign = -1 if by_metric and metric in LOWER_IS_BETTER else 1

    def key(i: int):
        c = candidates[i]
        loss = c["val_loss"] if c["val_loss"] is not None else float("inf")
        # Ties on a small validation set are common: the lower validation loss breaks them, then the order written.
        return ((-sign * c["score"], loss, i) if by_metric else (loss, i))

    best = min(range(len(candidates)), key=key)
    from tailorlm.train import registry

    record = {"on": f"{manifest['id']}:validation", "n": len(validation.examples),
              "by": metric if by_metric else "val_loss", "candidates": candidates, "chosen": best,
              "settings": candidates[best]["settings"]}
    log(f"      chosen: {', '.join(f'{k}={v}' for k, v in record['settings'].items())}")
    return registry.resolve(project, candidates[best]["model_version"]), record
