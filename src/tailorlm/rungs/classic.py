"""The `classic` rung: a linear classifier over TF-IDF or embedding features, the ladder's bottom rung.

It is what a practitioner would try before any LLM on a classification task, so every LLM rung is
measured against it. It answers with a label and no generator:

- Training data: the chat dataset's train split (`rungs.default_dataset`), the last user turn as the
  input and the assistant's answer as the label (only answers that are one of `task.labels`).
- Features, two kinds: TF-IDF over word unigrams and bigrams, or the project's embedder
  (`models.embedder`). The classifier is scikit-learn's LogisticRegression, whose probabilities are
  the answer's confidence.
- Tuning: every (features, C) pair is fitted on train and scored on the validation split; without
  one, by stratified k-fold cross-validation on train. The golden suite is never read. Ties go to
  the cheaper features (TF-IDF) and the stronger regularisation (smaller C).
- The fitted model is saved under `.tailor/models/classic/`, keyed by the dataset version, the
  settings, the embedder and the library version, so the ladder and the server reuse it and a new
  dataset version refits it.

Settings come from the rung's `train:` block, e.g. `{kind: classic, train: {features: [tfidf], C: [1, 10]}}`.
"""

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from tailorlm.errors import TailorError
from tailorlm.rungs.registry import RungType
from tailorlm.rungs.base import Answer, Prepared, last_user
from tailorlm.rungs.whole import AsGenerator, WholeAnswerRung
from tailorlm.models.base import Completion, GenParams, Messages, Usage

FEATURES = ("tfidf", "embedding")
C_GRID = (0.1, 1.0, 10.0, 100.0)
SETTINGS = {"features", "C", "cv_folds"}
FIT_VERSION = 1  # bump when fitting changes what a saved model means, so old ones are refitted


def settings_for(spec) -> dict:
    """The rung's classic settings from its `train:` block, checked, with defaults filled in."""
    from tailorlm.rungs.base import rung_settings

    given = rung_settings(spec, SETTINGS, "classic")
    features = given.get("features", list(FEATURES))
    features = [features] if isinstance(features, str) else list(features)
    bad = [f for f in features if f not in FEATURES]
    if bad or not features:
        raise TailorError(f"rung {spec.label!r}: features must be some of {', '.join(FEATURES)}, got {features}")
    grid = given.get("C", list(C_GRID))
    grid = [grid] if isinstance(grid, (int, float)) else list(grid)
    if not grid or not all(isinstance(c, (int, float)) and c > 0 for c in grid):
        raise TailorError(f"rung {spec.label!r}: C must be positive numbers, got {grid}")
    folds = given.get("cv_folds", 5)
    if not isinstance(folds, int) or folds < 2:
        raise TailorError(f"rung {spec.label!r}: cv_folds must be an integer ≥ 2, got {folds!r}")
    return {"features": features, "C": sorted(float(c) for c in grid), "cv_folds": folds}


def build_classic(project, spec, embedder=None) -> "ClassicRung":
    """The classic rung a spec describes, fitted on first use and loaded from disk after.

    >>> build_classic(project, RungConfig(kind="classic")).answer([{"role": "user", "content": "refund?"}]).text  # doctest: +SKIP
    'billing'
    """
    from tailorlm.rungs.build import default_dataset
    from tailorlm.rungs.few_shot import chat_pool
    from tailorlm.data.versions import resolve

    settings = settings_for(spec)
    manifest = resolve(project, default_dataset(project, spec))
    labels = list(project.config.task.labels)
    emb_cfg = project.config.models.embedder
    key = fit_key(manifest, settings, labels, emb_cfg.model_dump() if "embedding" in settings["features"] else None)
    folder = project.artifacts("models") / "classic" / f"{manifest['name']}-{key[:16]}"
    lazy = _LazyEmbedder(project, embedder)
    reused = (folder / "model.joblib").exists() and (folder / "meta.json").exists()
    if not reused:
        from tailorlm.data.versions import load_records

        splits = {s: [(u, a.strip(), rid) for u, a, rid in chat_pool(load_records(project, manifest, s))]
                  for s in ("train", "validation") if manifest["splits"].get(s)}
        if "train" not in splits:
            raise TailorError(f"rung {spec.label!r}: {manifest['id']} has no train split to fit on")
        model, meta = fit(splits, labels, settings, lazy, primary=project.config.eval.metrics[0])
        meta.update(dataset=manifest["id"], model_key=key[:16])
        save(folder, model, meta)
    import joblib

    model = joblib.load(folder / "model.joblib")  # the project's own artifact, written by `save`
    meta = json.loads((folder / "meta.json").read_text())
    rung = ClassicRung(model, lazy if model["features"] == "embedding" else None, spec.label, meta)
    rung.reused, rung.path = reused, folder
    return rung


def fit_key(manifest: dict, settings: dict, labels: list[str], embedder: dict | None) -> str:
    import sklearn

    blob = {"dataset": manifest["id"], "content_hash": manifest["content_hash"], "settings": settings,
            "labels": labels, "embedder": embedder, "sklearn": sklearn.__version__, "fit_version": FIT_VERSION}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def fit(splits: dict, labels: list[str], settings: dict, embedder, primary: str = "accuracy") -> tuple[dict, dict]:
    """Tune (features, C) on validation (or by cross-validation) and fit the winner on train.

    `splits` maps "train" (and "validation" when there is one) to (text, answer, id) triples.
    Returns the fitted model and its meta: the tuning table, the choice and the counts.
    """
    import numpy as np

    started = time.perf_counter()
    kept = {s: [(t, a) for t, a, _ in rows if not labels or a in labels] for s, rows in splits.items()}
    dropped = {s: len(splits[s]) - len(kept[s]) for s in splits if len(splits[s]) != len(kept[s])}
    train, val = kept["train"], kept.get("validation") or []
    texts, y = [t for t, _ in train], np.array([a for _, a in train])
    if len(set(y)) < 2:
        raise TailorError(f"classic needs train examples of at least two labels; the train split has {sorted(set(y))}")
    metric = primary if primary in ("accuracy", "macro_f1") else "accuracy"
    if val:
        # One "fold": all of train against the validation split, whose rows follow train's in `texts`.
        texts += [t for t, _ in val]
        y = np.concatenate([y, [a for _, a in val]])
        folds = [(np.arange(len(train)), np.arange(len(train), len(texts)))]
        tuned_on = f"validation ({len(val)} examples)"
    else:
        from sklearn.model_selection import StratifiedKFold

        k = min(settings["cv_folds"], int(min(np.unique(y, return_counts=True)[1])))
        folds = list(StratifiedKFold(k, shuffle=True, random_state=0).split(np.zeros(len(y)), y)) if k >= 2 else []
        tuned_on = f"{k}-fold cross-validation on train" if k >= 2 else "nothing (a label has one train example)"
    vectors = _Vectors(embedder)
    table = []
    for features in settings["features"] if folds else []:
        for C in settings["C"]:
            scores, losses = [], []
            for tr, te in folds:
                vec, X = _fit_features(features, [texts[i] for i in tr], vectors)
                clf = _classifier(C).fit(X, y[tr])
                proba = clf.predict_proba(_apply(features, vec, [texts[i] for i in te], vectors))
                scores.append(_score(metric, y[te], clf.classes_[proba.argmax(axis=1)]))
                losses.append(_log_loss(y[te], proba, clf.classes_))
            table.append({"features": features, "C": C, metric: round(float(np.mean(scores)), 6),
                          "log_loss": round(float(np.mean(losses)), 6)})
    # Ties on the metric (common on small validation sets) go to the better-calibrated fit (lower
    # log-loss), then to the configured order: TF-IDF (cheaper) first, C small to large.
    best = max(table, key=lambda r: (r[metric], -r["log_loss"])) if table else \
        {"features": settings["features"][0], "C": 1.0, metric: None, "log_loss": None}
    vectorizer, X = _fit_features(best["features"], texts[:len(train)], vectors)
    clf = _classifier(best["C"]).fit(X, y[:len(train)])
    model = {"features": best["features"], "vectorizer": vectorizer, "classifier": clf}
    meta = {"features": best["features"], "C": best["C"], "tuned_on": tuned_on, "selected_by": metric,
            "validation": {metric: best[metric], "log_loss": best["log_loss"]}, "tuning": table, "n_train": len(train), "n_validation": len(val),
            "labels": [str(c) for c in clf.classes_], "fit_s": round(time.perf_counter() - started, 3)}
    if dropped:
        meta["dropped_not_a_label"] = dropped
    return model, meta


class _Vectors:
    """Embeddings computed once per text while tuning: every fold and C reuses them."""

    def __init__(self, embedder):
        self.embedder, self.cache = embedder, {}

    def __call__(self, texts: list[str]):
        import numpy as np

        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            self.cache.update(zip(todo, self.embedder.embed(todo)))
        return np.asarray([self.cache[t] for t in texts], dtype=np.float32)


def _classifier(C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000)


def _fit_features(features: str, texts: list[str], vectors):
    """(vectorizer or None, feature matrix) for the rows a classifier is fitted on."""
    if features == "embedding":
        return None, vectors(texts)
    from sklearn.feature_extraction.text import TfidfVectorizer

    # The vocabulary comes from the fitted rows only, so a held-out row's words never leak into it.
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode")
    return vec, vec.fit_transform(texts)


def _apply(features: str, vectorizer, texts: list[str], vectors):
    return vectors(texts) if features == "embedding" else vectorizer.transform(texts)


def _log_loss(truth, proba, classes) -> float:
    """Mean negative log-probability of the true label; a label the fit never saw counts as p = 1e-15."""
    import numpy as np

    index = {c: i for i, c in enumerate(classes)}
    p = np.array([proba[r, index[t]] if t in index else 0.0 for r, t in enumerate(truth)])
    return float(-np.log(np.clip(p, 1e-15, 1.0)).mean())


def _score(metric: str, truth, predicted) -> float:
    from sklearn.metrics import accuracy_score, f1_score

    if metric == "macro_f1":
        return float(f1_score(truth, predicted, average="macro", zero_division=0))
    return float(accuracy_score(truth, predicted))


def save(folder: Path, model: dict, meta: dict) -> None:
    """Write model.joblib and meta.json aside and rename into place: no half-written model is ever loaded."""
    import joblib

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    joblib.dump(model, tmp / "model.joblib")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process saved the same key first: its model is the same fit
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


class _LazyEmbedder:
    """The project's embedder, loaded on the first text it embeds (TF-IDF alone never loads it)."""

    def __init__(self, project, embedder=None):
        self.project, self._embedder = project, embedder

    def embed(self, texts: list[str]) -> list[list[float]]:
        if self._embedder is None:
            from tailorlm.models import get_embedder

            self._embedder = get_embedder(self.project.config.models.embedder)
        return self._embedder.embed(texts)


class ClassicRung(WholeAnswerRung):
    """Messages in, a label out, from a fitted linear classifier: the Rung interface without a generator.

    Its text is exactly the predicted label, `meta["confidence"]` its probability, `meta["raw"]` the
    label; usage is zero tokens, so cost per 1k queries comes from the measured compute seconds.
    """

    kind = "classic"
    label_mode = "classic"

    def __init__(self, model: dict, embedder, name: str = "classic", meta: dict | None = None):
        self.model, self.embedder, self.name = model, embedder, name
        self.meta = dict(meta or {})
        self.labels = [str(c) for c in model["classifier"].classes_]
        self.system = None
        self.generator = AsGenerator(self)

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """(label, probability) for each text."""
        import numpy as np

        if self.model["features"] == "embedding":
            X = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        else:
            X = self.model["vectorizer"].transform(texts)
        proba = self.model["classifier"].predict_proba(X)
        best = proba.argmax(axis=1)
        return [(self.labels[j], float(proba[i, j])) for i, j in enumerate(best)]

    def finish(self, prepared: Prepared, c: Completion, latency_s: float) -> Answer:
        return Answer(c.text, self.name, Usage(), latency_s, c.finish_reason, meta={"raw": c.text})

    def answer_batch(self, batch: list[Messages], params: GenParams | None = None, batch_size: int = 8) -> list[Answer]:
        """Answers in input order; latency is the wall time of the chunk each was predicted in, and
        `meta["compute_s"]` its share of it, as for every rung."""
        out: list[Answer] = []
        for start in range(0, len(batch), batch_size):
            chunk = batch[start:start + batch_size]
            began = time.perf_counter()
            try:
                predicted = self.predict([last_user(m) for m in chunk])
            except Exception as e:  # scored as wrong, never dropped
                elapsed = time.perf_counter() - began
                out.extend(self.failed(e, elapsed) for _ in chunk)
                continue
            elapsed = time.perf_counter() - began
            for label, p in predicted:
                out.append(Answer(label, self.name, Usage(), elapsed, "stop",
                                  meta={"confidence": round(p, 6), "raw": label, "compute_s": elapsed / len(chunk)}))
        return out

    def describe(self) -> dict:
        model = f"{self.meta.get('features', self.model['features'])} + logistic regression (C={self.meta.get('C')})"
        return {"name": self.name, "kind": self.kind, "model": model, "backend": "local", **self.meta}


def _build(project, spec, pool, embedder=None, version=None, specs=()) -> ClassicRung:
    return build_classic(project, spec, embedder)


CLASSIC = RungType("classic", _build, effort=-1)  # no LLM: the baseline every other rung must beat
