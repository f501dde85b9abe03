"""Reward functions for `tailor train grpo`: scores for sampled answers, taken from the task.

A reward is `fn(completions, examples) -> [float]`, one score per completion, where each example is
`{"messages": prompt, "reference": answer or None}`. `build_rewards` turns the run's `rewards:`
specs (or, by default, the task) into weighted functions; the run's reward is their weighted sum.

Kinds, each a spec `{kind: ..., weight: 1.0, ...options}`:
- `label`: 1 when the whole answer is the reference label (classification).
- `label_valid`: 1 when the whole answer is one of `task.labels`, right or wrong.
- `schema`: 1 when the answer is JSON valid for `task.schema` (the `schema_valid` metric).
- `reference`: agreement with the reference: `metric` (normalized_match by default, or any paired
  metric of eval/metrics.py); for JSON references, the share of the reference's fields matched.
- `length`: 1 within `min_chars`..`max_chars`, falling linearly to 0 at twice the limit.
- `format`: 1 when the stripped answer matches `regex` whole.
- `python`: the user's `function: module:function`, imported from the project folder.
- `judge`: the configured judge's rubric score, 0..1 (`rubric`: a name in rubrics/).

On the command line a spec is `KIND`, `KIND*WEIGHT` or `module:function*WEIGHT`.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from tailorlm.errors import TailorError

RewardFn = Callable[[list[str], list[dict]], list[float]]
KINDS = ("label", "label_valid", "schema", "reference", "length", "format", "python", "judge")


@dataclass
class Reward:
    name: str
    weight: float
    fn: RewardFn


def parse_reward(text: str) -> dict:
    """A command-line reward (`label`, `label*0.5`, `mod:fn*0.3`) as a spec.

    >>> parse_reward("label*0.5"), parse_reward("my.rewards:brevity")
    ({'kind': 'label', 'weight': 0.5}, {'kind': 'python', 'function': 'my.rewards:brevity', 'weight': 1.0})
    """
    name, _, weight = text.strip().partition("*")
    try:
        w = float(weight) if weight else 1.0
    except ValueError:
        raise TailorError(f"--reward {text!r}: the weight after '*' must be a number") from None
    if ":" in name:
        return {"kind": "python", "function": name, "weight": w}
    if name not in KINDS:
        raise TailorError(f"--reward {text!r}: unknown reward {name!r}; use one of {', '.join(KINDS)} or module:function")
    return {"kind": name, "weight": w}


def default_specs(task) -> list[dict]:
    """What a task's answers can be checked against without anyone writing a reward."""
    if task.type == "classification" and task.labels:
        return [{"kind": "label", "weight": 1.0}]
    if task.type == "extraction" and getattr(task, "json_schema", None) is not None:
        return [{"kind": "schema", "weight": 0.5}, {"kind": "reference", "weight": 0.5}]
    return [{"kind": "reference", "weight": 1.0}]


def build_rewards(project, specs: list[dict] | None, generator=None) -> list[Reward]:
    """The weighted reward functions of `specs` (default: the task's); errors name the spec."""
    task = project.config.task
    out = []
    for i, spec in enumerate(specs or default_specs(task)):
        spec = dict(spec)
        kind, weight = spec.pop("kind", None), spec.pop("weight", 1.0)
        where = f"rewards[{i}]"
        if kind not in KINDS:
            raise TailorError(f"{where}: unknown reward kind {kind!r}; use one of {', '.join(KINDS)}")
        try:
            fn = _make(project, task, kind, spec, generator)
        except TypeError as e:
            raise TailorError(f"{where} ({kind}): {e}") from None
        name = spec.get("function", kind) if kind == "python" else kind
        out.append(Reward(name, float(weight), fn))
    return out


def score(rewards: list[Reward], completions: list[str], examples: list[dict]) -> tuple[list[float], dict]:
    """(weighted total per completion, {reward name: mean}) for completions and their examples."""
    totals = [0.0] * len(completions)
    means = {}
    for r in rewards:
        values = [float(v) for v in r.fn(completions, examples)]
        if len(values) != len(completions):
            raise TailorError(f"reward {r.name} returned {len(values)} scores for {len(completions)} completions")
        for i, v in enumerate(values):
            totals[i] += r.weight * v
        means[f"reward/{r.name}"] = sum(values) / len(values) if values else 0.0
    return totals, means


def _make(project, task, kind: str, options: dict, generator) -> RewardFn:
    from tailorlm.eval.metrics import extract_label

    if kind == "label":
        _no_options(options)
        labels = _labels(task, kind)

        def right(answer: str, reference: str | None) -> float:
            want = extract_label(reference, labels, "exact")
            return float(want is not None and extract_label(answer, labels, "exact") == want)

        return lambda cs, exs: [right(c, e["reference"]) for c, e in zip(cs, exs)]
    if kind == "label_valid":
        _no_options(options)
        labels = _labels(task, kind)
        return lambda cs, exs: [float(extract_label(c, labels, "exact") is not None) for c in cs]
    if kind == "schema":
        _no_options(options)
        from tailorlm.eval.metrics import schema_valid

        schema = getattr(task, "json_schema", None)
        if schema is None:
            raise TailorError("the schema reward needs task.schema (an extraction task's JSON Schema)")
        return lambda cs, exs: schema_valid(cs, schema=schema)["per_example"]
    if kind == "reference":
        return _reference(**options)
    if kind == "length":
        return _length(**options)
    if kind == "format":
        return _format(**options)
    if kind == "python":
        return _python(project, **options)
    return _judge(project, generator, **options)


def _no_options(options: dict) -> None:
    if options:
        raise TypeError(f"takes no options, got {', '.join(sorted(options))}")


def _labels(task, kind: str) -> list[str]:
    if not task.labels:
        raise TailorError(f"the {kind} reward needs task.labels (a classification task)")
    return list(task.labels)


def _reference(metric: str = "normalized_match") -> RewardFn:
    from tailorlm.eval.metrics import contains_match, exact_match, normalized_match

    pair = {"exact_match": exact_match, "normalized_match": normalized_match, "contains": contains_match}
    if metric not in pair:
        raise TailorError(f"reference reward: metric must be one of {', '.join(pair)}, got {metric!r}")

    def reward(cs, exs):
        return [0.0 if e["reference"] is None else json_overlap(c, e["reference"], pair[metric]) for c, e in zip(cs, exs)]

    return reward


def json_overlap(answer: str, reference: str, match) -> float:
    """For a JSON object reference: the share of its fields the answer's JSON gives equal values;
    otherwise `match(answer, reference)`.

    >>> json_overlap('{"a": 1, "b": 2}', '{"a": 1, "b": 3}', None)
    0.5
    """
    try:
        ref = json.loads(reference)
    except ValueError:
        ref = None
    if not isinstance(ref, dict) or not ref:
        return match(answer, reference)
    try:
        got = json.loads(answer)
    except ValueError:
        return 0.0
    if not isinstance(got, dict):
        return 0.0
    return sum(got.get(k) == v for k, v in ref.items()) / len(ref)


def _length(min_chars: int = 0, max_chars: int | None = None) -> RewardFn:
    def one(c: str) -> float:
        n = len(c.strip())
        if n < min_chars:
            return n / min_chars
        if max_chars is not None and n > max_chars:
            return max(0.0, 1 - (n - max_chars) / max(max_chars, 1))
        return 1.0

    return lambda cs, exs: [one(c) for c in cs]


def _format(regex: str) -> RewardFn:
    try:
        pattern = re.compile(regex, re.DOTALL)
    except re.error as e:
        raise TailorError(f"format reward: bad regex {regex!r}: {e}") from None
    return lambda cs, exs: [float(pattern.fullmatch(c.strip()) is not None) for c in cs]


def _python(project, function: str) -> RewardFn:
    import importlib
    import sys

    module_name, _, attr = function.partition(":")
    root = str(project.root)
    if root not in sys.path:
        sys.path.insert(0, root)  # the project's own modules, as `tailor` is run from its folder
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise TailorError(f"reward {function!r}: cannot import it ({e}); it must be module:function importable "
                          f"from {root}") from None
    if not callable(fn):
        raise TailorError(f"reward {function!r} is not a function")
    return fn


def _judge(project, generator, rubric: str = "default") -> RewardFn:
    from tailorlm.eval.judge import judge_for, load_rubric, rubric_scores
    from tailorlm.rungs.base import last_user

    judge, warning = judge_for(project, generator)
    text = load_rubric(project, rubric)

    def reward(cs, exs):
        rows = [{"question": last_user(e["messages"]), "answer": c, "reference": e["reference"]} for c, e in zip(cs, exs)]
        return rubric_scores(judge, rows, text, warning=warning)["per_example"]

    return reward
