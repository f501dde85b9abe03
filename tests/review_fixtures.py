"""A project for the review and workbench tests: a prepared ticket dataset with a planted XSS canary,
two eval reports answered by scripted rungs on a review suite, and served traces with feedback.

`rag_project` is the shipped example's documents indexed for a `rag` rung, for the playground's sources.

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


def with_a_run(project, model_dir):
    """The project with a real 6-step LoRA run on its tickets (the session's tiny model as the base), for
    the Runs page: (project reloaded with that generator, the run's result)."""
    from tailorlm.project import Project
    from tailorlm.train.config import TrainConfig
    from tailorlm.train.runs import train
    from tests.helpers import extend_config

    extend_config(project.root, {"models": {"generator": {"model": str(model_dir)}}})
    project = Project.load(project.root)
    return project, train(project, TrainConfig(dataset="tickets", max_steps=6, eval_steps=2, batch_size=8,
                                               learning_rate=1e-2, warmup_ratio=0.0, lora_dropout=0.0))


def with_a_ladder(project):
    """The project with a real ladder run of two rungs on its review suite: (project reloaded, the ladder).
    The scripted model reads the label off the question only when it was shown examples, so few-shot
    (100%) beats zero-shot (a third right) and the ladder has something to recommend."""
    from tailorlm.project import Project
    from tailorlm.ladder.run import run_ladder
    from tests.helpers import ScriptedGenerator, extend_config

    class ReadsLabelsWhenShown(ScriptedGenerator):
        def generate(self, messages, params=None):
            question = messages[-1]["content"]
            shown = any(m["role"] == "assistant" for m in messages)
            self.default = next((x for x in LABELS if x in question), "billing") if shown else "billing"
            return super().generate(messages, params)

    extend_config(project.root, {"rungs": [{"kind": "zero_shot"}, {"kind": "few_shot", "k": 2}], "prices": {"cpu_hour": 0.1}})
    project = Project.load(project.root)
    return project, run_ladder(project, generator=ReadsLabelsWhenShown(), log=lambda *a: None)


RAG_ANSWER = "Restores are encrypted end to end [1]."


@pytest.fixture
def rag_project(tmp_path):
    """A project whose one rung is `rag` over three of the Keelbox example's documents, indexed with
    the embedded MiniLM; serve it with `ModelPool(project, generator=ScriptedGenerator(default=RAG_ANSWER))`."""
    import shutil

    from tailorlm.project import Project
    from tailorlm.quickstart import example_dir
    from tailorlm.rag.documents import index_documents
    from tailorlm.rag.index import RagIndex

    root = tmp_path / "kb"
    (root / "docs").mkdir(parents=True)
    for name in ("restore-guide.md", "security-overview.html", "plans-and-pricing.md"):
        shutil.copy(example_dir() / "docs" / name, root / "docs" / name)
    (root / "tailor.yaml").write_text("name: kb\ntask: {description: Answer questions about Keelbox.}\n"
                                      "sources:\n  - {name: docs, path: docs/, kind: text}\nrungs:\n  - {kind: rag}\n")
    project = Project.load(root)
    RagIndex.for_project(project).build(index_documents(project)[0])
    return project
