"""A project for the review and workbench tests: a prepared ticket dataset with a planted XSS canary,
two eval reports answered by scripted rungs on a review suite, and served traces with feedback.

Import with `from tests.review_fixtures import reviewed_project  # noqa: F401`.
"""

import json

import pytest

LABELS = ["billing", "login", "bug"]
# Record text that a page must show as text: if it ran, it would set a global the browser test looks for.
CANARY = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def build(root, store_url: str | None = None):
    from tailorlm.data.pipeline import prepare
    from tailorlm.eval.runner import evaluate
    from tailorlm.eval.suite import load_suite
    from tailorlm.rungs.base import PromptRung
    from tailorlm.project import Project
    from tailorlm.serve.traces import Traces, add_feedback
    from tests.helpers import ScriptedGenerator

    root.mkdir(parents=True)
    tickets = [{"id": f"t{i}", "messages": [{"role": "user", "content": f"ticket {i}: my {LABELS[i % 3]} issue number {i}"
                                             + (f" {CANARY}" if i == 7 else "")},
                                            {"role": "assistant", "content": LABELS[i % 3]}]} for i in range(40)]
    (root / "tickets.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tickets))
    # Long enough questions for the decontaminate step's n-grams; `fresh` is a suite the project does not
    # evaluate on, so pairs drawn from it may train.
    for file, words in (("review.jsonl", "keeps failing whenever I open the app on Monday"),
                        ("fresh.jsonl", "went wrong again after the upgrade last night")):
        suite = [{"id": f"q{i}", "input": [{"role": "user", "content": f"question {i}: my {LABELS[i % 3]} {words}"}],
                  "reference": LABELS[i % 3], "labels": [LABELS[i % 3]]} for i in range(24)]
        (root / file).write_text("".join(json.dumps(r) + "\n" for r in suite))
    (root / "tailor.yaml").write_text(
        "name: shop\ntask: {description: Route tickets., type: classification, labels: [billing, login, bug]}\n"
        "sources:\n  - {name: tickets, path: tickets.jsonl, kind: chat}\n"
        "data:\n  steps:\n    - validate: {}\n    - split: {train: 0.8, validation: 0.2, test: 0.0}\n"
        "eval: {path: review.jsonl, metrics: [accuracy]}\n" + (f"store: {{url: '{store_url}'}}\n" if store_url else ""))
    project = Project.load(root)
    prepare(project)
    # A answers a third right, B two thirds: B should win.
    a = [LABELS[i % 3] if i % 3 == 0 else "bug, probably" for i in range(24)]
    b = [LABELS[i % 3] if i % 3 != 2 else f"not sure {CANARY}" for i in range(24)]
    for file in ("review.jsonl", "fresh.jsonl"):
        examples = load_suite(project, file)
        for name, answers in (("base", a), ("tuned", b)):
            gen = ScriptedGenerator()
            order = {e.input[0]["content"]: ans for e, ans in zip(examples.examples, answers)}
            gen.generate = _by_question(gen, order)
            evaluate(project, PromptRung(gen, system="Route it.", name=name), examples, ["accuracy"], subject=f"shop:{name}")
    traces = Traces(project, redact=False)
    for i, (question, answer, thumbs) in enumerate([("refund please", "login", "down"), ("reset my password", "login", "up"),
                                                    (f"app crashes {CANARY}", "billing", None)]):
        request = {"model": "shop:base", "messages": [{"role": "user", "content": question}]}
        response = {"id": f"tr{i}", "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                                 "finish_reason": "stop"}]}
        traces.record(f"tr{i}", "shop:base", request, response, 200, 0.01, 3, 1, "/v1/chat/completions")
        if thumbs:
            add_feedback(project, f"tr{i}", thumbs=thumbs, redact=False)
    return project


def _by_question(gen, order):
    from tailorlm.models.base import Completion, Usage

    def generate(messages, params=None):
        text = order[messages[-1]["content"]]
        return Completion(text, "stop", Usage(3, 1), "scripted")

    return generate


@pytest.fixture
def reviewed_project(tmp_path):
    return build(tmp_path / "shop")
