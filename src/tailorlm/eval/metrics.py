"""Answer-quality metrics for `tailor eval` and the ladder: match, labels, overlap, calibration, perplexity, cost.

Every metric returns per-example scores next to its aggregate, because the ladder compares rungs on
the same examples (`stats.py`). `METRICS` maps the names used in tailor.yaml to functions with one
signature, `(preds, refs, **kw) -> {"per_example": [...], "score": float}`. Two kinds:

- mean metrics (accuracy, exact match, ROUGE-L): `score` is the mean of `per_example`;
- corpus metrics (macro-F1, micro-F1, BLEU, chrF): `score` is computed from counts pooled over the
  suite and is not the mean of `per_example`. They also return `stats` (one row of counts per
  example) and `from_stats` (counts summed over any set of examples -> the metric), so intervals and
  paired deltas bootstrap the corpus value itself (`stats.corpus_ci`, `stats.paired_corpus_bootstrap`).

A prediction that failed or never names a label arrives as None (or an unmatched string) and
scores as wrong; nothing is dropped. scikit-learn, sacrebleu, rouge-score, numpy and torch are
imported inside the functions that use them, so `tailor --help` stays fast.
"""

from __future__ import annotations

import math
import re
import string

from tailorlm.plugins import registry

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_SEPARATORS = re.compile(r"[\s_\-]+")


def _check_pair(preds, refs) -> None:
    if len(preds) != len(refs):
        raise ValueError(f"preds and refs differ in length ({len(preds)} vs {len(refs)}); score every example")
    if not preds:
        raise ValueError("no examples to score")


def _result(per_example: list[float], score: float | None = None) -> dict:
    per_example = [float(x) for x in per_example]
    return {"per_example": per_example, "score": float(sum(per_example) / len(per_example) if score is None else score)}


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation and articles, collapse whitespace.

    >>> normalize_answer("  The Eiffel-Tower, in  Paris! ")
    'eiffeltower in paris'
    """
    text = "".join(ch for ch in (text or "").lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(pred: str | None, ref: str) -> float:
    """1.0 when the strings are equal after stripping outer whitespace. >>> exact_match(" Paris", "Paris") -> 1.0"""
    return float(pred is not None and pred.strip() == ref.strip())


def normalized_match(pred: str | None, ref: str) -> float:
    """1.0 when the SQuAD-normalised strings are equal. >>> normalized_match("the Paris.", "paris") -> 1.0"""
    return float(pred is not None and normalize_answer(pred) == normalize_answer(ref))


_DIGIT_GROUPS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def _words(text: str) -> str:
    # Punctuation becomes a space, not nothing: "2+2=4" must still contain the word "4"; "1,000" is 1000.
    text = _DIGIT_GROUPS.sub("", text.lower())
    return normalize_answer("".join(" " if ch in _PUNCT else ch for ch in text))


def contains_match(pred: str | None, ref: str) -> float:
    """1.0 when the normalised reference appears in the normalised prediction as whole words.

    For short references inside free-text answers (the general-capability suite). Generous: an
    answer that lists several candidates contains the right one too.

    >>> contains_match("The capital of France is Paris.", "paris"), contains_match("Parisian food", "Paris")
    (1.0, 0.0)
    """
    key = _words(ref)
    return float(pred is not None and bool(key) and f" {key} " in f" {_words(pred)} ")


def _label_key(text: str) -> str:
    # `_` and `-` are punctuation to SQuAD and would glue words ("loginsso"); make them spaces first.
    return normalize_answer(_SEPARATORS.sub(" ", text))


def extract_label(text: str | None, labels: list[str], mode: str = "first") -> str | None:
    """The label a free-text answer names, or None when it names none.

    "exact": the whole normalised answer must be the label ("Login-SSO." -> login_sso).
    "first": the label mentioned earliest, as whole words, with `_`, `-` and spaces interchangeable.

    >>> extract_label("I think this is about login sso issues", ["billing", "login_sso"])
    'login_sso'
    """
    if text is None:
        return None
    if mode == "exact":
        key = _label_key(text)
        return next((label for label in labels if _label_key(label) == key), None)
    if mode != "first":
        raise ValueError(f"mode must be 'first' or 'exact', got {mode!r}")
    best = None  # (start, -length, label): earliest wins; at one start the longest ("billing dispute" over "billing")
    for label in labels:
        words = [re.escape(w) for w in _SEPARATORS.split(label.strip()) if w]
        if not words:
            continue
        # Lookarounds, not \b, so a label that starts or ends in punctuation still matches whole.
        pattern = r"(?<!\w)" + r"[\s_\-]+".join(words) + r"(?!\w)"
        m = re.search(pattern, text, flags=re.IGNORECASE)
        if m and (best is None or (m.start(), -len(m.group())) < best[:2]):
            best = (m.start(), -len(m.group()), label)
    return best[2] if best else None


def _maybe_extract(preds, labels, extract):
    if extract is None:
        return list(preds)
    if labels is None:
        raise ValueError("extract needs the list of labels")
    return [extract_label(p, labels, extract) for p in preds]


def accuracy(preds, refs, labels: list[str] | None = None, extract: str | None = None) -> dict:
    """Per-example 0/1 correctness and its mean; `extract` ("first"/"exact") pulls labels out of free text first.

    >>> accuracy(["a", None, "b"], ["a", "b", "b"])["score"]
    0.6666666666666666
    """
    _check_pair(preds, refs)
    preds = _maybe_extract(preds, labels, extract)
    return _result([p is not None and p == r for p, r in zip(preds, refs)])


_NO_LABEL = "\x00no label"  # stands for a None prediction in scikit-learn, which wants one type of label


def label_stats(preds, refs, labels: list[str]):
    """Per-example counts behind the F1 scores: one row of [tp per label, fp per label, fn per label].

    A prediction that is None or not in `labels` is a false negative for the true label and a false
    positive for no label; a reference outside `labels` makes a correct answer count for nothing.
    Summed over any set of examples, the rows give that set's confusion counts, which is what the
    bootstrap resamples.
    """
    import numpy as np

    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    out = np.zeros((len(preds), 3 * k))
    for row, (p, r) in enumerate(zip(preds, refs)):
        ip, ir = index.get(p), index.get(r)
        if ip is not None and p == r:
            out[row, ip] = 1
            continue
        if ip is not None:
            out[row, k + ip] = 1
        if ir is not None:
            out[row, 2 * k + ir] = 1
    return out


def _split(summed):
    k = summed.shape[-1] // 3
    return summed[..., :k], summed[..., k:2 * k], summed[..., 2 * k:]


def _f1(tp, fp, fn):
    import numpy as np

    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(np.broadcast(tp, denom).shape), where=denom > 0)


def macro_f1_from_stats(summed):
    """Macro-F1 from summed `label_stats` rows, shape (..., 3L) -> (...); a label with no support scores 0."""
    tp, fp, fn = _split(summed)
    return _f1(tp, fp, fn).mean(axis=-1)


def micro_f1_from_stats(summed):
    """Micro-F1 (pooled counts over the labels) from summed `label_stats` rows, shape (..., 3L) -> (...)."""
    tp, fp, fn = _split(summed)
    return _f1(tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1))


def _f1_metric(preds, refs, labels, extract, average: str) -> dict:
    from sklearn.metrics import f1_score

    _check_pair(preds, refs)
    labels = sorted(set(refs)) if labels is None else list(labels)
    preds = _maybe_extract(preds, labels, extract)
    # scikit-learn scores over `labels` only, so the stand-in for None is a wrong answer for the true
    # label and a false positive for nothing, as `label_stats` counts it.
    y_pred = [_NO_LABEL if p is None else p for p in preds]
    score = f1_score(list(refs), y_pred, labels=labels, average=average, zero_division=0)
    out = {**_result([p is not None and p == r for p, r in zip(preds, refs)], float(score)),
           "stats": label_stats(preds, refs, labels),
           "from_stats": macro_f1_from_stats if average == "macro" else micro_f1_from_stats, "labels": labels}
    if average == "macro":
        per = f1_score(list(refs), y_pred, labels=labels, average=None, zero_division=0)
        out["per_label"] = {label: float(f) for label, f in zip(labels, per)}
    return out


def macro_f1(preds, refs, labels: list[str] | None = None, extract: str | None = None) -> dict:
    """Unweighted mean of per-label F1 over `labels` (default: the labels seen in refs).

    scikit-learn's `f1_score(average="macro", labels=labels, zero_division=0)`. A None (or unknown)
    prediction is a class of its own: a false negative for the true label and a false positive for
    no label, and it is not averaged in. A label with no true and no predicted examples has F1 0.
    `per_example` is 0/1 correctness (for listing differences); `stats` and `from_stats` give the
    corpus value on any resample of the examples (`stats.corpus_ci`).

    >>> round(macro_f1(["a", "a", None, "b"], ["a", "b", "b", "b"])["score"], 4)  # F1 a = 2/3, b = 1/2
    0.5833
    """
    return _f1_metric(preds, refs, labels, extract, "macro")


def micro_f1(preds, refs, labels: list[str] | None = None, extract: str | None = None) -> dict:
    """F1 of the counts pooled over `labels` (scikit-learn's average="micro").

    Equal to accuracy when every prediction and reference is one of `labels`; lower when some
    predictions name no label (they are misses but no label's false positive).

    >>> round(micro_f1(["a", "a", None, "b"], ["a", "b", "b", "b"])["score"], 4)  # tp 2, fp 1, fn 2
    0.5714
    """
    return _f1_metric(preds, refs, labels, extract, "micro")


def expected_calibration_error(confidences, correct, n_bins: int = 10) -> dict:
    """Expected calibration error over `n_bins` equal-width confidence bins (Guo et al. 2017).

    ECE = sum over bins of (examples in bin / n) * |accuracy in bin - mean confidence in bin|. Bin b
    holds confidences in [b/n_bins, (b+1)/n_bins), the last bin includes 1.0. `bins` lists every bin
    (empty ones with n 0) for a reliability diagram; `stats` and `from_stats` give the ECE of any
    resample (a row per example: its (correct - confidence) in its bin's column, then 1).

    >>> r = expected_calibration_error([0.9, 0.8, 0.3], [1, 0, 0])
    >>> round(r["ece"], 4)  # bin 0.8-0.9: |0 - 0.8| / 3; bin 0.9-1: |1 - 0.9| / 3; bin 0.3-0.4: |0 - 0.3| / 3
    0.4
    """
    import numpy as np

    conf = np.asarray(confidences, dtype=float)
    hit = np.asarray(correct, dtype=float)
    if conf.size == 0 or conf.size != hit.size:
        raise ValueError(f"need one confidence per correctness value, at least one ({conf.size} vs {hit.size})")
    if np.any((conf < 0) | (conf > 1)) or not np.all(np.isfinite(conf)):
        raise ValueError("confidences must be probabilities in [0, 1]")
    which = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    stats = np.zeros((conf.size, n_bins + 1))
    stats[np.arange(conf.size), which] = hit - conf
    stats[:, n_bins] = 1
    bins = []
    for b in range(n_bins):
        inside = which == b
        count = int(inside.sum())
        bins.append({"low": b / n_bins, "high": (b + 1) / n_bins, "n": count,
                     "confidence": float(conf[inside].mean()) if count else None,
                     "accuracy": float(hit[inside].mean()) if count else None})
    return {"ece": float(ece_from_stats(stats.sum(axis=0))), "bins": bins, "n": int(conf.size), "n_bins": n_bins,
            "stats": stats, "from_stats": ece_from_stats}


def ece_from_stats(summed):
    """ECE from summed `expected_calibration_error` rows, shape (..., bins + 1) -> (...)."""
    import numpy as np

    return np.abs(summed[..., :-1]).sum(axis=-1) / summed[..., -1]


def _texts(preds) -> list[str]:
    return ["" if p is None else p for p in preds]  # a failed generation is an empty answer: scores 0


def _sacrebleu(metric_cls, preds, refs, kw) -> dict:
    _check_pair(preds, refs)
    metric = metric_cls(**kw)
    preds = _texts(preds)
    # The per-sentence sufficient statistics and the score from their sum are sacrebleu's own
    # (its paired bootstrap in sacrebleu/significance.py resamples them the same way).
    stats = metric._extract_corpus_statistics(preds, [list(refs)])
    return {"score": metric.corpus_score(preds, [list(refs)]).score, "stats": stats,
            "from_stats": lambda summed: _from_sacre_stats(metric, summed)}


def _from_sacre_stats(metric, summed):
    import numpy as np

    summed = np.asarray(summed)
    rows = summed.reshape(-1, summed.shape[-1])
    scores = [metric._compute_score_from_stats([int(round(x)) for x in row]).score for row in rows]
    return np.asarray(scores).reshape(summed.shape[:-1])


def bleu(preds, refs, **kw) -> dict:
    """sacrebleu BLEU (0-100): `score` is corpus-level, `per_example` sentence-level (smoothed) for listing.

    Corpus BLEU is not the mean of the sentence scores; `stats`/`from_stats` bootstrap the corpus value.
    """
    import sacrebleu
    from sacrebleu.metrics import BLEU

    out = _sacrebleu(BLEU, preds, refs, kw)
    out["per_example"] = [float(sacrebleu.sentence_bleu(p, [r], **kw).score) for p, r in zip(_texts(preds), refs)]
    return out


def chrf(preds, refs, **kw) -> dict:
    """sacrebleu chrF (0-100): corpus-level `score`, sentence-level `per_example`, `stats` for the bootstrap."""
    import sacrebleu
    from sacrebleu.metrics import CHRF

    out = _sacrebleu(CHRF, preds, refs, kw)
    out["per_example"] = [float(sacrebleu.sentence_chrf(p, [r], **kw).score) for p, r in zip(_texts(preds), refs)]
    return out


def rouge_l(preds, refs, use_stemmer: bool = False, **kw) -> dict:
    """ROUGE-L F-measure (0-1) per example, via rouge-score; `score` is their mean."""
    from rouge_score import rouge_scorer

    _check_pair(preds, refs)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    # rouge-score's argument order is (target, prediction).
    return _result([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(_texts(preds), refs)])


def perplexity(nlls_per_token: list[list[float]]) -> dict:
    """Per-example mean NLL and corpus perplexity exp(sum NLL / sum tokens), in nats.

    Corpus perplexity weights every token equally, so long references count for more; the
    per-example means are what to pair and bootstrap.

    >>> round(perplexity([[1.0, 3.0], [2.0]])["perplexity"], 4)  # exp(6 / 3)
    7.3891
    """
    if not nlls_per_token or any(len(x) == 0 for x in nlls_per_token):
        raise ValueError("every example needs at least one scored token")
    total = sum(sum(x) for x in nlls_per_token)
    n_tokens = sum(len(x) for x in nlls_per_token)
    return {"per_example": [sum(x) / len(x) for x in nlls_per_token], "mean_nll": total / n_tokens,
            "perplexity": math.exp(total / n_tokens), "n_tokens": n_tokens, "n": len(nlls_per_token)}


def reference_nll(generator_or_model, tokenizer, messages: list[dict], reference: str) -> list[float]:
    """Per-token NLL (nats) of `reference` as the assistant's reply to `messages`, prompt excluded.

    Accepts a `LocalGenerator` (tokenizer may be None) or a bare causal LM. The reply is tokenised
    the way generation produces it (prompt ids, then answer ids) and includes the end-of-turn
    token, so a model that would keep talking pays for it.
    """
    import torch

    # A causal LM has a `.model` attribute too (its decoder), so test for a module, not for `.model`.
    is_module = isinstance(generator_or_model, torch.nn.Module)
    model = generator_or_model if is_module else generator_or_model.model
    tokenizer = tokenizer or generator_or_model.tokenizer
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(list(messages) + [{"role": "assistant", "content": reference}], tokenize=False)
    # The text after the reply's end-of-turn token is template layout (a newline), not the answer.
    answer = full[len(prompt):].rstrip() if full.startswith(prompt) else reference + (tokenizer.eos_token or "")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not answer_ids:
        raise ValueError("the reference is empty after tokenisation")
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids + answer_ids], device=device)
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1:-1].float()  # position t predicts token t+1
    logprobs = torch.log_softmax(logits, dim=-1)
    target = torch.tensor(answer_ids, device=device)
    return (-logprobs.gather(1, target[:, None]).squeeze(1)).tolist()


def _summary(values, name: str) -> dict:
    import numpy as np

    if len(values) == 0:
        raise ValueError(f"no {name} to summarise")
    arr = np.asarray(values, dtype=float)
    # numpy's default linear interpolation: p50 of [1..10] is 5.5, p95 is 9.55.
    p50, p95 = np.quantile(arr, [0.5, 0.95])
    return {"p50": float(p50), "p95": float(p95), "mean": float(arr.mean()), "n": int(arr.size)}


def latency_summary(seconds: list[float]) -> dict:
    """p50, p95 and mean of per-query latencies. >>> latency_summary([1, 2, 3])["p50"] -> 2.0"""
    return _summary(seconds, "latencies")


def tokens_summary(counts: list[int]) -> dict:
    """p50, p95, mean and total of per-query token counts."""
    return {**_summary(counts, "token counts"), "total": int(sum(counts))}


def cost_per_1k(prompt_tokens: int, completion_tokens: int, n_queries: int, prices: dict) -> dict:
    """USD per 1,000 queries from token totals (API prices) or measured seconds (hourly prices).

    `prices` holds `api_input_per_1m` and `api_output_per_1m` (USD per million tokens), or
    `gpu_hour` / `cpu_hour` (USD) with the measured wall-clock `seconds` for all `n_queries`. A GPU
    machine's hourly price already covers its CPUs, so `gpu_hour` wins over `cpu_hour`. With no
    usable price the cost is None and `reason` says what is missing: Tailor never invents a price.

    >>> cost_per_1k(1_000_000, 0, 1000, {"api_input_per_1m": 0.5, "api_output_per_1m": 1.5})["usd_per_1k"]
    0.5
    """
    if n_queries < 1:
        raise ValueError(f"n_queries must be at least 1, got {n_queries}")
    prices = prices or {}
    api_in, api_out = prices.get("api_input_per_1m"), prices.get("api_output_per_1m")
    if api_in is not None or api_out is not None:
        if api_in is None or api_out is None:
            return {"usd_per_1k": None, "basis": None,
                    "reason": "API pricing needs both api_input_per_1m and api_output_per_1m"}
        usd = (prompt_tokens * api_in + completion_tokens * api_out) / 1e6
        return {"usd_per_1k": usd / n_queries * 1000, "basis": "api",
                "reason": f"{prompt_tokens} prompt + {completion_tokens} completion tokens at "
                          f"${api_in}/${api_out} per 1M, over {n_queries} queries"}
    for key in ("gpu_hour", "cpu_hour"):
        if prices.get(key) is not None:
            if prices.get("seconds") is None:
                return {"usd_per_1k": None, "basis": None, "reason": f"{key} is set but no measured seconds"}
            usd = prices["seconds"] / 3600 * prices[key]
            return {"usd_per_1k": usd / n_queries * 1000, "basis": key,
                    "reason": f"{prices['seconds']:.1f} s at ${prices[key]}/h, over {n_queries} queries"}
    return {"usd_per_1k": None, "basis": None,
            "reason": "no price configured (api_input_per_1m/api_output_per_1m, gpu_hour or cpu_hour)"}


def schema_valid(preds, refs=None, schema: dict | None = None, **kw) -> dict:
    """1.0 per answer that parses as JSON and validates against `schema` (jsonschema); references are not needed.
    Without a schema any JSON value passes (the empty schema).

    >>> schema_valid(['{"n": 1}', '{"n": "x"}', 'n=1', None], schema={"properties": {"n": {"type": "integer"}}})["per_example"]
    [1.0, 0.0, 0.0, 0.0]
    """
    import json

    from jsonschema.validators import validator_for

    if not preds:
        raise ValueError("no examples to score")
    schema = {} if schema is None else schema
    validator = validator_for(schema)(schema)

    def valid(pred) -> float:
        try:
            return float(pred is not None and validator.is_valid(json.loads(pred)))
        except ValueError:  # not JSON (JSONDecodeError is a ValueError)
            return 0.0

    return _result([valid(p) for p in preds])


def _per_pair(fn):
    def metric(preds, refs, **kw) -> dict:
        _check_pair(preds, refs)
        return _result([fn(p, r) for p, r in zip(preds, refs)])

    metric.__name__, metric.__doc__ = fn.__name__, fn.__doc__
    return metric


# The per-example matches as metrics over a suite.
exact_match_metric = _per_pair(exact_match)
normalized_match_metric = _per_pair(normalized_match)
contains_metric = _per_pair(contains_match)

# Names as written under `metrics:` in tailor.yaml: the `tailorlm.metrics` entry points (`plugins.py`).
# Tailor's own are declared in pyproject.toml, over the functions above; a package adds its own the same way.
METRICS = registry("tailorlm.metrics")
