"""Suites, the eval runner, comparisons and the regression gate, on real reports written to disk."""

import json

import pytest

from tailorlm.errors import TailorError
from tailorlm.eval.compare import compare, gate
from tailorlm.eval.runner import evaluate, load_report
from tailorlm.eval.suite import load_suite
from tailorlm.ladder.base import PromptRung
from tailorlm.project import Project
from tests.helpers import ScriptedGenerator

LABELS = ["billing", "login", "bug"]


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "tailor.yaml").write_text("name: shop\ntask: {description: Route tickets., type: classification, "
                                      "labels: [billing, login, bug]}\n")
    rows = [{"id": f"g{i}", "input": [{"role": "user", "content": f"ticket number {i}"}], "reference": LABELS[i % 3],
             "labels": [LABELS[i % 3]]} for i in range(30)]
    (root / "golden.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Project.load(root)


class Flaky(ScriptedGenerator):
    """Answers ticket i with answers[i]; fails on prompts that mention `poison`, which the runner
    must score as wrong without losing the example."""

    def __init__(self, answers, poison):
        super().__init__()
        self.by_ticket, self.poison = answers, poison

    def generate(self, messages, params=None):
        if self.poison in messages[-1]["content"]:
            raise RuntimeError("backend exploded")
        self.answers = [self.by_ticket[int(messages[-1]["content"].rsplit(" ", 1)[1])]]
        return super().generate(messages, params)

    def generate_batch(self, batch, params=None, batch_size=8):
        if any(self.poison in m[-1]["content"] for m in batch):
            raise RuntimeError("batch exploded")
        return super().generate_batch(batch, params, batch_size)


def _run(project, answers, name, poison="never-matches"):
    suite = load_suite(project, "golden.jsonl")
    rung = PromptRung(Flaky(answers, poison), system="Route it.", name=name)
    return evaluate(project, rung, suite, ["accuracy", "macro_f1", "exact_match"])


def test_suite_from_file_has_a_content_version(project):
    s = load_suite(project, "golden.jsonl")
    assert len(s.examples) == 30 and s.examples[0].target == "billing"
    before = s.version
    (project.root / "golden.jsonl").write_text((project.root / "golden.jsonl").read_text().replace("number 3", "no. 3"))
    assert load_suite(project, "golden.jsonl").version != before


def test_bad_suite_line_names_file_line_and_field(project):
    with open(project.root / "golden.jsonl", "a") as f:
        f.write('{"id": "bad", "input": [{"role": "user"}]}\n')
    with pytest.raises(TailorError, match=r"golden.jsonl:31: input"):
        load_suite(project, "golden.jsonl")


def test_report_scores_labels_from_free_text_with_cis(project):
    answers = [f"I think this is {LABELS[i % 3]}." if i < 20 else "no idea" for i in range(30)]
    report = _run(project, answers, "chatty")
    acc = report["metrics"]["accuracy"]
    assert acc["mean"] == pytest.approx(20 / 30) and acc["low"] < acc["mean"] < acc["high"] and acc["n"] == 30
    assert report["metrics"]["exact_match"]["mean"] == 0.0  # the labels were extracted, not matched verbatim
    assert report["examples"][0]["label"] == "billing" and report["examples"][25]["label"] is None
    saved = load_report(project, report["id"])
    assert saved["metrics"]["accuracy"]["mean"] == acc["mean"]
    assert project.store.select("reports", id=report["id"])[0]["n"] == 30


def test_a_failing_example_scores_as_wrong_and_is_kept(project):
    answers = [LABELS[i % 3] for i in range(30)]
    report = _run(project, answers, "flaky", poison="ticket number 7")
    assert len(report["examples"]) == 30 and report["errors"] == 1
    bad = next(e for e in report["examples"] if e["id"] == "g7")
    assert bad["error"].startswith("RuntimeError") and bad["scores"]["accuracy"] == 0.0
    assert report["metrics"]["accuracy"]["mean"] == pytest.approx(29 / 30)


def test_interrupted_eval_resumes_without_answering_again(project):
    suite = load_suite(project, "golden.jsonl")
    gen = ScriptedGenerator(default="billing")
    rung = PromptRung(gen, name="steady")
    first = evaluate(project, rung, suite, ["accuracy"])
    path = project.root / ".tailor" / "reports" / first["id"] / "examples.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:12]) + "\n" + lines[12][:15])  # a crash mid-write: 12 rows and a torn line
    calls = len(gen.calls)
    again = evaluate(project, rung, suite, ["accuracy"])
    assert len(gen.calls) - calls == 18 and again["metrics"]["accuracy"]["mean"] == first["metrics"]["accuracy"]["mean"]


def test_compare_lists_differences_and_tests_significance(project):
    a = _run(project, [LABELS[i % 3] if i < 10 else "bug?" for i in range(30)], "a")
    b = _run(project, [LABELS[i % 3] for i in range(30)], "b")
    result = compare(a, b)
    acc = result["metrics"]["accuracy"]
    assert acc["delta"] == pytest.approx(acc["b"] - acc["a"]) and acc["test"] == "mcnemar"
    wrong_in_a = sum(1 for i in range(10, 30) if LABELS[i % 3] != "bug")
    assert acc["b_wins"] == wrong_in_a and acc["a_wins"] == 0 and acc["significant"] and acc["better"] == "b"
    assert result["n_differ"] == wrong_in_a and {d["id"] for d in result["differ"]} <= {f"g{i}" for i in range(10, 30)}


def test_gate_fails_a_significant_drop_and_passes_noise(project):
    good = _run(project, [LABELS[i % 3] for i in range(30)], "prod")
    worse = _run(project, [LABELS[i % 3] if i < 12 else "?" for i in range(30)], "cand-bad")
    close = _run(project, [LABELS[i % 3] if i != 4 else "?" for i in range(30)], "cand-ok")
    failed = gate([(good, worse)], margin=0.02, metrics=["accuracy"])
    assert not failed["passed"] and failed["failures"][0]["metric"] == "accuracy"
    assert gate([(good, close)], margin=0.02, metrics=["accuracy"])["passed"]  # one example: not significant
    assert gate([(good, worse)], margin=0.7, metrics=["accuracy"])["passed"]  # within a wide margin


def test_compare_refuses_different_suites(project):
    a = _run(project, ["billing"] * 30, "a")
    b = dict(a, suite={**a["suite"], "version": "deadbeef"})
    with pytest.raises(TailorError, match="different suites"):
        compare(a, b)


def test_eval_compare_gate_cli(project, cli):
    _run(project, [LABELS[i % 3] for i in range(30)], "zero_shot")
    r1 = _run(project, [LABELS[i % 3] for i in range(30)], "x")
    r2 = _run(project, ["?"] * 30, "y")
    out = cli("compare", r1["id"], r2["id"], "--project", project.root, "--json")
    assert json.loads(out.stdout)["metrics"]["accuracy"]["delta"] == pytest.approx(-1.0)
    res = cli("gate", f"{r1['id']}:{r2['id']}", "--project", project.root)
    assert res.exit_code == 1 and "FAIL" in res.stdout
    listed = json.loads(cli("reports", "list", "--project", project.root, "--json").stdout)["reports"]
    assert {r1["id"], r2["id"]} <= {r["id"] for r in listed}
