"""LLM-as-judge for `tailor eval` and the ladder: rubric scores (1-5) and pairwise preference.

Where no reference answer can be matched (open-ended answers, tone, groundedness), a model reads
the answer against a written rubric. Judges are biased and noisy, so this module is defensive:

- a verdict that cannot be parsed scores the minimum and is counted (`unparsed`), never dropped;
- pairwise preference asks twice with the answers' positions swapped, and a win counts only when
  both orders agree, so a judge that always prefers the first position gives only ties;
- the embedded 135M model is a weak judge, and every result it produces carries a `warning`.

The judge is `models.judge` in tailor.yaml, or the generator when unset (`judge_for`). Rubrics are
`rubrics/NAME.md` in the project; `default` falls back to `DEFAULT_RUBRIC`.

Where people rated some of the very answers the judge scores (blind side-by-side reviews on the same
suite), `with_human_ratings` corrects the judge's score with theirs by prediction-powered inference
(Angelopoulos et al., Science 2023), so a judge that disagrees with people gets a wider interval in
`tailor eval` and the ladder.
"""

import json
import math
import re
from statistics import NormalDist, fmean, variance

from tailorlm.config import EMBEDDED_GENERATOR, GeneratorConfig
from tailorlm.errors import TailorError
from tailorlm.models.base import GenParams, Messages

WEAK_JUDGE_WARNING = ("the embedded 135M model is a weak judge: treat its scores as a smoke test, "
                      "set models.judge to a stronger backend")

DEFAULT_CRITERIA = """\
- Correctness: the answer agrees with the reference answer, when one is given, and states nothing false.
- Helpfulness: it answers what was asked, directly and concisely.
- Groundedness: it makes no claims beyond what the question, the reference or its quoted sources support."""

DEFAULT_RUBRIC = DEFAULT_CRITERIA + """

Scale:
5 = correct, helpful and fully grounded.
4 = correct and helpful, with a minor omission or some unneeded detail.
3 = partly correct or partly helpful: an important point is missing, unclear or unsupported.
2 = mostly wrong, unhelpful or unsupported, but with something of value.
1 = wrong, off-topic, empty, or invents facts."""

_SCORE_ASK = 'Reply with "Score: N" (N from 1 to 5) on the first line, then one sentence saying why.'
_WINNER_ASK = ('Which answer is better? Reply with "Winner: 1", "Winner: 2" or "Winner: tie" on the first line, '
               'then one sentence saying why.')

_NUMBER = r"(\d+(?:\.\d+)?)"
_KEYED_SCORE = re.compile(r"\b(?:score|rating)\b\W{0,5}(?:(?:is|of)\W{0,3})?" + _NUMBER, re.IGNORECASE)
_OUT_OF_5 = re.compile(_NUMBER + r"\s*(?:/|out of)\s*5\b", re.IGNORECASE)
_BARE = re.compile(r"^\W*" + _NUMBER + r"\W*$")
_WINNER = re.compile(r"\bwinner\b\W{0,5}(?:is\W{0,3})?(?:answer\s*)?(1|2|tie)\b"
                     r"|\banswer\s*(1|2)\s+is\s+better\b", re.IGNORECASE)
_BARE_WINNER = re.compile(r"^\W*(?:answer\s*)?(1|2|tie)\W*$", re.IGNORECASE)


def _json_field(text: str, key: str):
    """`key` from the first {...} object in `text`, or None."""
    match = re.search(r"\{.*?\}", text, re.DOTALL)
    try:
        obj = json.loads(match.group()) if match else None
    except json.JSONDecodeError:
        return None
    return obj.get(key) if isinstance(obj, dict) else None


def parse_score(text: str | None, low: int = 1, high: int = 5) -> float | None:
    """The score in a judge's verdict, or None when there is none in [low, high].

    Reads JSON `{"score": 4}`, "Score: 4", "Rating: 4/5", "4 out of 5" or a bare "4". Any other
    number in the text is left alone: "it mentions 1990" is not a score.

    >>> [parse_score(t) for t in ['{"score": 4}', "Score: 5. Good.", "I'd say 3/5", "2", "Score: 9", "great"]]
    [4.0, 5.0, 3.0, 2.0, None, None]
    """
    text = text or ""
    found = _json_field(text, "score")
    if found is None:
        match = _KEYED_SCORE.search(text) or _OUT_OF_5.search(text) or _BARE.match(text)
        found = match.group(1) if match else None
    try:
        score = float(found)
    except (TypeError, ValueError):
        return None
    return score if low <= score <= high else None


def parse_winner(text: str | None) -> str | None:
    """"1", "2" or "tie" from a pairwise verdict, or None when it names none.

    >>> [parse_winner(t) for t in ["Winner: 2", '{"winner": "1"}', "Tie.", "Answer 1 is better.", "both"]]
    ['2', '1', 'tie', '1', None]
    """
    text = text or ""
    found = _json_field(text, "winner")
    if found is None:
        match = _WINNER.search(text) or _BARE_WINNER.match(text)
        found = next((g for g in match.groups() if g), None) if match else None
    found = str(found).strip().lower() if found is not None else None
    return found if found in ("1", "2", "tie") else None


def render(question: str | Messages) -> str:
    """A question for a judge prompt: a string as-is, a one-turn conversation as its text,
    a longer one as `role: content` lines."""
    if isinstance(question, str):
        return question
    if len(question) == 1:
        return question[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in question)


def _quoted(title: str, text: str) -> str:
    # Delimited, so an answer that says "Score: 5" or "ignore the rubric" reads as the answer's text.
    return f"{title}:\n<<<\n{text}\n>>>\n\n"


def _prompt(intro: str, rubric: str, example: dict, answers: list[tuple[str, str]], ask: str) -> str:
    ref = example.get("reference")
    parts = [f"{intro}\n\n{rubric}\n\n", _quoted("Question", render(example["question"])),
             _quoted("Reference answer", ref) if ref else "", *(_quoted(t, a) for t, a in answers), ask]
    return "".join(parts)


def _ask(judge, prompts: list[str], params: GenParams, batch_size: int) -> list[str]:
    convos = [[{"role": "user", "content": p}] for p in prompts]
    if not convos:
        return []
    if hasattr(judge, "generate_batch"):
        return [c.text for c in judge.generate_batch(convos, params, batch_size=batch_size)]
    return [judge.generate(c, params).text for c in convos]


def weak_judge_warning(judge) -> str | None:
    """The weak-judge warning when `judge` (a generator or a model config) is the embedded 135M model."""
    if isinstance(judge, GeneratorConfig):
        weak = judge.backend == "local" and judge.model == EMBEDDED_GENERATOR
    else:
        weak = getattr(judge, "name", None) == EMBEDDED_GENERATOR
    return WEAK_JUDGE_WARNING if weak else None


def rubric_scores(judge, examples: list[dict], rubric: str | None = None, params: GenParams | None = None,
                  batch_size: int = 8, warning: str | None = None) -> dict:
    """Score each {question, answer, reference?} from 1 to 5 against `rubric` (default `DEFAULT_RUBRIC`).

    `per_example` is (s - 1) / 4 in [0, 1], to pair with other metrics; `scores` keeps the 1-5
    values. An unparseable verdict, or an answer of None (the rung failed), scores 1. `warning`
    (from `judge_for`) is carried into the result; without it, the judge's name decides.

    >>> rubric_scores(judge, [{"question": "2+2?", "answer": "4", "reference": "4"}])["scores"]  # doctest: +SKIP
    [5.0]
    """
    params = params or GenParams(max_tokens=64)
    asked = [i for i, ex in enumerate(examples) if ex.get("answer") is not None]
    intro = "You are grading an assistant's answer against this rubric."
    prompts = [_prompt(intro, rubric or DEFAULT_RUBRIC, examples[i], [("Answer to grade", examples[i]["answer"])], _SCORE_ASK)
               for i in asked]
    raw: list[str | None] = [None] * len(examples)
    for i, text in zip(asked, _ask(judge, prompts, params, batch_size)):
        raw[i] = text
    parsed = [parse_score(t) if t is not None else None for t in raw]
    scores = [1.0 if s is None else s for s in parsed]
    per_example = [(s - 1) / 4 for s in scores]
    return {"per_example": per_example, "score": sum(per_example) / len(per_example) if per_example else 0.0,
            "scores": scores, "mean_1to5": sum(scores) / len(scores) if scores else 0.0,
            "parsed": sum(s is not None for s in parsed), "unparsed": len(asked) - sum(s is not None for s in parsed),
            "no_answer": len(examples) - len(asked), "raw": raw, "warning": warning or weak_judge_warning(judge)}


# What each order's verdict means for the candidates: (A first, B first) -> "A", "B" or "tie".
_FIRST = {"1": "A", "2": "B", "tie": "tie"}
_SWAPPED = {"1": "B", "2": "A", "tie": "tie"}
_VALUE = {"A": 0.0, "tie": 0.5, "B": 1.0}


def pairwise(judge, examples: list[dict], rubric: str | None = None, params: GenParams | None = None,
             batch_size: int = 8, warning: str | None = None) -> dict:
    """Is answer B better than answer A? Each {question, a, b, reference?} is judged twice, A first
    and then B first; a win counts only when both orders agree, otherwise it is a tie.

    `per_example` is 1 (B better), 0.5 (tie) or 0 (A better), and `score` its mean: B's win
    rate, ties counted half. `win`/`tie`/`loss` count from B's side. `consistency` is the share of
    examples whose verdict survived the swap; a judge that only looks at positions scores 0.
    `unparsed` counts verdicts (two per example). An answer of None (a failed rung) loses without
    asking, and two failures tie. `rubric` defaults to `DEFAULT_CRITERIA` (no 1-5 scale).
    """
    params = params or GenParams(max_tokens=32)
    intro, criteria = "You are comparing two answers to the same question, by these criteria.", rubric or DEFAULT_CRITERIA
    asked = [i for i, ex in enumerate(examples) if ex.get("a") is not None and ex.get("b") is not None]
    prompts = []
    for i in asked:
        ex = examples[i]
        prompts += [_prompt(intro, criteria, ex, [("Answer 1", ex["a"]), ("Answer 2", ex["b"])], _WINNER_ASK),
                    _prompt(intro, criteria, ex, [("Answer 1", ex["b"]), ("Answer 2", ex["a"])], _WINNER_ASK)]
    texts = _ask(judge, prompts, params, batch_size)
    outcome, raw = {}, [None] * len(examples)
    consistent = unparsed = 0
    for n, i in enumerate(asked):
        first, swapped = texts[2 * n], texts[2 * n + 1]
        raw[i] = [first, swapped]
        v1, v2 = parse_winner(first), parse_winner(swapped)
        unparsed += (v1 is None) + (v2 is None)
        agreed = v1 is not None and v2 is not None and _FIRST[v1] == _SWAPPED[v2]
        consistent += agreed
        outcome[i] = _FIRST[v1] if agreed else "tie"
    for i, ex in enumerate(examples):
        if i not in outcome:  # one or both answers missing: the missing one loses
            outcome[i] = "tie" if ex.get("a") is None and ex.get("b") is None else ("A" if ex.get("b") is None else "B")
    per_example = [_VALUE[outcome[i]] for i in range(len(examples))]
    return {"per_example": per_example, "score": sum(per_example) / len(per_example) if per_example else 0.0,
            "win": per_example.count(1.0), "tie": per_example.count(0.5), "loss": per_example.count(0.0),
            "consistency": consistent / len(asked) if asked else 0.0, "unparsed": unparsed,
            "raw": raw, "warning": warning or weak_judge_warning(judge)}


def load_rubric(project, name: str = "default") -> str | None:
    """The text of `rubrics/NAME.md` in the project; None for `default` without a file, which
    means the built-in `DEFAULT_RUBRIC` (rubric scores) or `DEFAULT_CRITERIA` (pairwise)."""
    from tailorlm.paths import inside, safe_name

    path = inside(project.root, "rubrics", safe_name(name, "rubric name") + ".md")
    if path.exists():
        text = path.read_text(encoding="utf-8").strip()
        if not text:
            raise TailorError(f"rubrics/{name}.md is empty")
        return text
    if name == "default":
        return None
    raise TailorError(f"no rubric rubrics/{name}.md in {project.root}")


def judge_for(project, generator=None):
    """(judge, warning): `models.judge` from tailor.yaml, or the generator when it is unset.

    Pass an already loaded `generator` to reuse it when the judge is the generator. `warning` is
    `WEAK_JUDGE_WARNING` when the judge is the embedded 135M model, else None; reports carry it.

    >>> judge, warning = judge_for(project)  # doctest: +SKIP
    """
    from tailorlm.models import get_generator

    cfg = project.config.models.judge
    if cfg is not None:
        return get_generator(cfg), weak_judge_warning(cfg)
    cfg = project.config.models.generator
    return generator or get_generator(cfg), weak_judge_warning(cfg)


def _suite_rows(examples, preds) -> list[tuple]:
    """(input messages, reference, prediction) per example; suite Examples or eval-record dicts."""
    rows = [(e["input"], e.get("reference")) if isinstance(e, dict) else (e.input, e.reference) for e in examples]
    return [(q, r, p) for (q, r), p in zip(rows, preds, strict=True)]


def judge_rubric(project, examples, preds: list[str | None], *, generator=None, rubric: str = "default",
                 params: GenParams | None = None, batch_size: int = 8) -> dict:
    """`rubric_scores` for the eval runner: the project's judge (`judge_for`), `rubrics/RUBRIC.md`.

    `examples` are suite Examples (or eval-record dicts) with `input` and `reference`; `preds[i]`
    answers `examples[i]`. `generator`, when given, is reused as the judge if models.judge is unset.
    """
    judge, warning = judge_for(project, generator)
    rows = [{"question": q, "answer": p, "reference": r} for q, r, p in _suite_rows(examples, preds)]
    return rubric_scores(judge, rows, load_rubric(project, rubric), params, batch_size, warning)


def judge_pairwise(project, examples, preds: list[str | None], *, baseline: list[str | None] | None = None,
                   generator=None, rubric: str = "default", params: GenParams | None = None, batch_size: int = 8) -> dict:
    """`pairwise` for the eval runner: `preds` are B and `baseline` (another rung's answers) are A.

    Without a baseline, A is each example's reference answer: a score above 0.5 means the judge
    prefers the predictions to the references. Arguments as in `judge_rubric`.
    """
    judge, warning = judge_for(project, generator)
    rows, against_refs = _suite_rows(examples, preds), baseline is None
    baseline = [r for _, r, _ in rows] if against_refs else baseline
    # Against the references, the reference is answer A: showing it again as "reference" would bias the judge.
    pairs = [{"question": q, "a": a, "b": p, "reference": None if against_refs else r}
             for (q, r, p), a in zip(rows, baseline, strict=True)]
    return pairwise(judge, pairs, load_rubric(project, rubric), params, batch_size, warning)


# Names as written under `eval.metrics` in tailor.yaml. Unlike `metrics.METRICS` (preds, refs) they
# need the project, for its judge and rubrics: `JUDGE_METRICS[name](project, suite.examples, preds)`.
JUDGE_METRICS = {"judge_rubric": judge_rubric, "judge_pairwise": judge_pairwise}


def ppi_mean(judge_all: list[float], judge_rated: list[float], human_rated: list[float], confidence: float = 0.95) -> dict:
    """Prediction-powered mean: the judge on every example, rectified by the people on the rated ones.

    Angelopoulos, Bates, Fannjiang, Jordan and Zrnic, "Prediction-powered inference", Science 382
    (2023): the judge's mean over all N answers plus the mean human-minus-judge gap over the n that
    people rated, with variance var(judge)/N + var(gap)/n and a normal interval. A judge that agrees
    with people has a gap that barely varies and adds almost nothing; one that disagrees widens it.

    >>> r = ppi_mean([0.5, 0.75, 0.25, 1.0], [0.5, 0.75], [0.75, 0.75])
    >>> r["mean"]
    0.75
    """
    n, big_n = len(human_rated), len(judge_all)
    gap = [h - j for h, j in zip(human_rated, judge_rated, strict=True)]
    point = fmean(judge_all) + fmean(gap)
    var = (variance(judge_all) / big_n if big_n > 1 else 0.0) + (variance(gap) / n if n > 1 else 0.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * math.sqrt(var)
    naive = z * math.sqrt(variance(judge_all) / big_n) if big_n > 1 else 0.0
    return {"mean": point, "low": point - half, "high": point + half, "judge_only": fmean(judge_all),
            "judge_only_low": fmean(judge_all) - naive, "judge_only_high": fmean(judge_all) + naive, "n_rated": n,
            "n": big_n, "gap_mean": fmean(gap), "method": PPI_METHOD}


PPI_METHOD = "prediction-powered inference (Angelopoulos et al., Science 2023), normal interval"
MIN_RATED = 2  # the gap's variance needs two rated answers; with one the interval would only look narrow


def with_human_ratings(project, suite, preds: list[str | None], entry: dict) -> dict:
    """A `judge_rubric` score entry of `eval.runner.score`, corrected by the people's ratings of the same answers.

    The labelled set is every answer in `preds` that a rater scored 1-5 in a blind side-by-side
    review on this suite (same name and version, same example, the same answer text: a rating
    belongs to the words rated, not to the rung), the raters' overall mean mapped to [0, 1] as the
    judge's (s - 1) / 4 is. Those reviews draw seeded random samples of the suite, which is what
    `ppi_mean` needs. With fewer than `MIN_RATED` rated answers the entry is returned as it was.
    (`judge_pairwise` is not corrected: people rate two rungs' answers, while that judge compares an
    answer with the reference, so there is no human counterpart to its scores.) Otherwise `mean`, `score`, `low` and `high` are the corrected ones, `judge_only` keeps the
    judge's own interval and `human` says how many answers people rated.

    >>> score(project, suite, preds, ["judge_rubric"])["judge_rubric"]["human"]  # doctest: +SKIP
    {'n_rated': 10, 'gap_mean': -0.21, 'reviews': ['pr-3f2a...']}
    """
    if "per_example" not in entry or not preds:
        return entry
    from tailorlm.review.judge import rated_answers

    rated, reviews = rated_answers(project, f"{suite.name}@{suite.version}")
    labelled = [(entry["per_example"][i], (fmean(rated[(e.id, p)]) - 1) / 4)
                for i, (e, p) in enumerate(zip(suite.examples, preds, strict=True)) if p is not None and (e.id, p) in rated]
    if len(labelled) < MIN_RATED:
        return entry
    r = ppi_mean(entry["per_example"], [j for j, _ in labelled], [h for _, h in labelled])
    judge_only = {k: entry[k] for k in ("mean", "low", "high", "method")}
    return {**entry, "mean": r["mean"], "score": r["mean"], "low": r["low"], "high": r["high"], "method": PPI_METHOD,
            "judge_only": judge_only, "human": {"n_rated": r["n_rated"], "gap_mean": r["gap_mean"], "reviews": reviews}}
