"""LLM-as-judge: verdict parsing, the position swap, unparseable verdicts, the judge from tailor.yaml."""

import re

import pytest

from tailorlm.config import GeneratorConfig, parse_config
from tailorlm.errors import TailorError
from tailorlm.eval.judge import (DEFAULT_RUBRIC, JUDGE_METRICS, WEAK_JUDGE_WARNING, judge_for, load_rubric, pairwise,
                                 parse_score, parse_winner, rubric_scores, weak_judge_warning)
from tailorlm.models.base import GenParams
from tailorlm.project import Project
from tests.helpers import ScriptedGenerator


@pytest.mark.parametrize("text, expected", [
    ('{"score": 4, "reason": "fine"}', 4.0),
    ('Verdict: {"score": "2"}', 2.0),
    ("Score: 5\nIt is correct.", 5.0),
    ("**Score:** 3", 3.0),
    ("I would give it a score of 4.", 4.0),
    ("Rating: 4/5", 4.0),
    ("Overall 2/5, it misses the point", 2.0),
    ("3 out of 5", 3.0),
    (" 4. ", 4.0),
    ("Score: 4.5", 4.5),
    ("Score: 0", None),  # out of the 1-5 range
    ("Score: 7", None),
    ("The answer says 1990, which is wrong.", None),  # a stray number is not a score
    ("", None),
    (None, None),
])
def test_parse_score(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Winner: 1\nIt is shorter.", "1"),
    ("winner is answer 2", "2"),
    ("Winner: tie", "tie"),
    ('{"winner": 2}', "2"),
    ("Answer 2 is better because it cites the policy.", "2"),
    ("2", "2"),
    ("Tie.", "tie"),
    ("Both answers are fine.", None),
    ("Winner: 3", None),
    (None, None),
])
def test_parse_winner(text, expected):
    assert parse_winner(text) == expected


def _examples():
    return [{"question": "What is 2+2?", "answer": "4", "reference": "4"},
            {"question": [{"role": "user", "content": "Capital of France?"}], "answer": "Lyon"},
            {"question": "Say hi", "answer": "hi"}]


def test_rubric_scores_parse_normalise_and_count_unparseable_as_minimum():
    judge = ScriptedGenerator(["Score: 5", "I cannot decide, sorry.", '{"score": 3}'])
    out = rubric_scores(judge, _examples())
    assert out["scores"] == [5.0, 1.0, 3.0]  # the unparseable verdict scores the minimum...
    assert out["per_example"] == [1.0, 0.0, 0.5]  # ...and stays in, as 0 on the 0-1 scale
    assert (out["parsed"], out["unparsed"], out["no_answer"]) == (2, 1, 0)
    assert out["score"] == pytest.approx(0.5) and out["mean_1to5"] == pytest.approx(3.0)
    assert out["raw"][1] == "I cannot decide, sorry." and out["warning"] is None
    prompts = [c[0]["content"] for c in judge.calls]
    assert all(DEFAULT_RUBRIC in p for p in prompts)
    assert "Reference answer" in prompts[0] and "Reference answer" not in prompts[1]
    assert "Capital of France?" in prompts[1] and "Lyon" in prompts[1]  # a one-turn conversation reads as its text


def test_a_failed_answer_scores_minimum_without_asking_the_judge():
    judge = ScriptedGenerator(["Score: 4", "Score: 4"])
    examples = _examples()
    examples[1]["answer"] = None
    out = rubric_scores(judge, examples, rubric="Be strict.")
    assert len(judge.calls) == 2 and "Be strict." in judge.calls[0][0]["content"]
    assert out["scores"] == [4.0, 1.0, 4.0] and out["no_answer"] == 1 and out["unparsed"] == 0


class BatchOnly(ScriptedGenerator):
    """Records the batches it was handed, to show that the judge batches when it can."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.batches = []

    def generate_batch(self, batch, params=None, batch_size=8):
        self.batches.append((len(batch), batch_size, params))
        return super().generate_batch(batch, params, batch_size)


class SingleOnly:
    name = "single"

    def __init__(self, text):
        self.text, self.calls = text, 0

    def generate(self, messages, params=None):
        self.calls += 1
        return ScriptedGenerator([self.text]).generate(messages, params)


def test_judge_batches_when_it_can_and_falls_back_to_single_calls():
    batched = BatchOnly(default="Score: 2")
    params = GenParams(max_tokens=16)
    out = rubric_scores(batched, _examples(), params=params, batch_size=4)
    assert batched.batches == [(3, 4, params)] and out["scores"] == [2.0] * 3
    single = SingleOnly("Winner: tie")
    out = pairwise(single, [{"question": "q", "a": "x", "b": "y"}])
    assert single.calls == 2 and out["tie"] == 1 and out["consistency"] == 1.0


PAIRS = [{"question": "q1", "a": "good answer", "b": "bad answer"},
         {"question": "q2", "a": "bad answer", "b": "good answer"},
         {"question": "q3", "a": "good answer", "b": "good answer too"}]


def test_a_judge_that_always_prefers_position_one_gives_only_ties():
    judge = ScriptedGenerator(default="Winner: 1")
    out = pairwise(judge, PAIRS)
    assert out["per_example"] == [0.5, 0.5, 0.5]
    assert (out["win"], out["tie"], out["loss"]) == (0, 3, 0) and out["consistency"] == 0.0
    # It was asked twice per example, with the answers' positions swapped.
    first, swapped = (c[0]["content"] for c in judge.calls[:2])
    assert first.index("good answer") < first.index("bad answer")
    assert swapped.index("bad answer") < swapped.index("good answer")


class ContentJudge(ScriptedGenerator):
    """Prefers the position that holds an answer starting with "good": a judge with real, not positional, taste."""

    def generate(self, messages, params=None):
        one, two = re.findall(r"Answer [12]:\n<<<\n(.*?)\n>>>", messages[0]["content"], re.DOTALL)
        self.answers = ["Winner: 1" if one.startswith("good") else "Winner: 2" if two.startswith("good") else "Winner: tie"]
        return super().generate(messages, params)


def test_a_consistent_preference_counts_and_an_inconsistent_one_is_a_tie():
    out = pairwise(ContentJudge(), PAIRS)
    # q1: A wins in both orders; q2: B wins in both; q3: both good, so "position 1" twice -> tie.
    assert out["per_example"] == [0.0, 1.0, 0.5]
    assert (out["win"], out["tie"], out["loss"]) == (1, 1, 1)
    assert out["consistency"] == pytest.approx(2 / 3) and out["score"] == pytest.approx(0.5)


def test_pairwise_counts_unparseable_verdicts_and_failed_answers_lose():
    judge = ScriptedGenerator(["Winner: 2", "no idea"])  # the second order is unparseable
    examples = [{"question": "q", "a": "x", "b": "y"}, {"question": "q", "a": None, "b": "y"},
                {"question": "q", "a": "x", "b": None}, {"question": "q", "a": None, "b": None}]
    out = pairwise(judge, examples)
    assert len(judge.calls) == 2  # only the first example needed the judge
    assert out["per_example"] == [0.5, 1.0, 0.0, 0.5]
    assert out["unparsed"] == 1 and out["consistency"] == 0.0
    assert out["raw"][0] == ["Winner: 2", "no idea"] and out["raw"][1] is None


def _project(tmp_path, models: str = "") -> Project:
    return Project(tmp_path, parse_config(f"name: p\ntask: {{description: Answer questions.}}\n{models}"))


def test_judge_for_falls_back_to_the_generator_and_warns_about_the_embedded_model(tmp_path):
    generator = ScriptedGenerator()
    judge, warning = judge_for(_project(tmp_path), generator)
    assert judge is generator and warning == WEAK_JUDGE_WARNING
    assert "weak judge" in warning and "models.judge" in warning


def test_judge_for_uses_models_judge_from_one_line_of_config(tmp_path):
    project = _project(tmp_path, "models:\n  judge: {backend: openai, model: big-judge, base_url: 'http://127.0.0.1:9/v1'}\n")
    judge, warning = judge_for(project, ScriptedGenerator())
    assert judge.name == "big-judge" and warning is None
    gen_only = _project(tmp_path, "models:\n  generator: {backend: openai, model: served, base_url: 'http://127.0.0.1:9/v1'}\n")
    judge, warning = judge_for(gen_only)
    assert judge.name == "served" and warning is None


def test_weak_judge_warning_names_only_the_embedded_local_model():
    assert weak_judge_warning(GeneratorConfig()) == WEAK_JUDGE_WARNING
    assert weak_judge_warning(GeneratorConfig(backend="openai", base_url="http://x/v1")) is None
    assert weak_judge_warning(ScriptedGenerator()) is None
    embedded = ScriptedGenerator(default="Score: 3")
    embedded.name = "smollm2-135m-instruct"
    assert rubric_scores(embedded, _examples())["warning"] == WEAK_JUDGE_WARNING


def test_load_rubric_from_the_project(tmp_path):
    project = _project(tmp_path)
    assert load_rubric(project) is None  # the built-in default
    (tmp_path / "rubrics").mkdir()
    (tmp_path / "rubrics" / "tone.md").write_text("5 = polite and correct.\n")
    assert load_rubric(project, "tone") == "5 = polite and correct."
    with pytest.raises(TailorError, match="no rubric"):
        load_rubric(project, "missing")
    with pytest.raises(TailorError, match="invalid rubric name"):
        load_rubric(project, "../secrets")


def test_judge_metrics_take_the_project_rubric_and_warning(tmp_path):
    project = _project(tmp_path)
    (tmp_path / "rubrics").mkdir()
    (tmp_path / "rubrics" / "default.md").write_text("Project rubric.")
    examples = [{"input": [{"role": "user", "content": "2+2?"}], "reference": "4"},
                {"input": [{"role": "user", "content": "Capital of France?"}], "reference": "Paris"}]
    judge = ScriptedGenerator(["Score: 4", "Score: 2"])
    out = JUDGE_METRICS["judge_rubric"](project, examples, ["4", "Lyon"], generator=judge)
    assert out["scores"] == [4.0, 2.0] and out["warning"] == WEAK_JUDGE_WARNING  # the configured generator is embedded
    assert "Project rubric." in judge.calls[0][0]["content"] and DEFAULT_RUBRIC not in judge.calls[0][0]["content"]
    # Pairwise against the references: A is the reference, B the prediction, and no separate reference section.
    judge = ScriptedGenerator(["Winner: 2", "Winner: 1"])
    out = JUDGE_METRICS["judge_pairwise"](project, examples[1:], ["Paris, of course"], generator=judge)
    assert out["per_example"] == [1.0] and out["consistency"] == 1.0
    first = judge.calls[0][0]["content"]
    assert first.index("Answer 1:\n<<<\nParis\n") < first.index("Paris, of course") and "Reference answer" not in first
    with pytest.raises(ValueError):
        JUDGE_METRICS["judge_rubric"](project, examples, ["only one answer"], generator=judge)


def test_the_eval_runner_scores_judge_metrics_by_name_with_models_judge(tmp_path, upstream):
    from tailorlm.eval.runner import score
    from tailorlm.eval.suite import Example, Suite

    project = _project(tmp_path, f"models:\n  judge: {{backend: openai, model: judge, base_url: '{upstream.base_url}'}}\n")
    suite = Suite("s", "test", [Example(f"e{i}", [{"role": "user", "content": f"q{i}"}], "ref") for i in range(3)])
    # The endpoint answers concurrent requests in any order, so every verdict is the same.
    upstream.answers = ["Score: 4"] * 3 + ["Winner: 2"] * 6
    out = score(project, suite, ["a0", None, "a2"], ["judge_rubric", "judge_pairwise"])
    assert out["judge_rubric"]["per_example"] == [0.75, 0.0, 0.75]  # the failed answer scores the minimum
    assert out["judge_rubric"]["n"] == 3 and out["judge_rubric"]["low"] <= out["judge_rubric"]["mean"]
    assert out["judge_pairwise"]["per_example"] == [0.5, 0.0, 0.5]  # "position 2" both times is no preference
    assert len(upstream.requests) == 2 + 4 and {r["model"] for r in upstream.requests} == {"judge"}


def test_tiny_real_model_as_judge_end_to_end(tiny_generator):
    """A random 2-layer model writes garbage verdicts: every example is still scored, none dropped."""
    params = GenParams(max_tokens=8)
    out = rubric_scores(tiny_generator, _examples(), params=params)
    assert len(out["per_example"]) == 3 and out["parsed"] + out["unparsed"] == 3
    assert all(isinstance(t, str) for t in out["raw"])
    for text, s in zip(out["raw"], out["scores"]):
        assert s == (parse_score(text) or 1.0)
    pair = pairwise(tiny_generator, PAIRS, params=params)
    assert len(pair["per_example"]) == 3 and pair["win"] + pair["tie"] + pair["loss"] == 3
    assert all(len(r) == 2 for r in pair["raw"]) and 0.0 <= pair["consistency"] <= 1.0
