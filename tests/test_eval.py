"""Suites, the eval runner, comparisons and the regression gate, on real reports written to disk."""

import json

import pytest

from tailorlm.errors import TailorError
from tailorlm.eval.compare import compare, gate
from tailorlm.eval.runner import evaluate, load_report
from tailorlm.eval.suite import load_suite
from tailorlm.rungs.base import PromptRung
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


# ---- true numbers: corpus metrics, calibration, and where they are printed ------------------------

class Confident(PromptRung):
    """A label-held rung as the ladder builds them: each answer carries the chosen label's probability
    (`meta["confidence"]`) and the raw model output (`meta["raw"]`)."""

    def __init__(self, answers, confidences, name):
        super().__init__(Flaky(answers, "never-matches"), system="Route it.", name=name)
        self.confidences = confidences

    def answer_batch(self, batch, params=None, batch_size=8):
        out = super().answer_batch(batch, params, batch_size)
        for messages, answer in zip(batch, out):
            i = int(messages[-1]["content"].rsplit(" ", 1)[1])
            answer.meta.update(confidence=self.confidences[i], raw=f"raw answer {i}")
        return out


def _hand_case():
    """Ten tickets per label. billing: 5 right, 5 name no label. login: 6 right, 4 answered billing.
    bug: all 10 right. Confidence 0.9 on bug, 0.75 on the other right answers, 0.65 on the wrong ones."""
    answers, conf = [], []
    for i in range(30):
        label, k = LABELS[i % 3], i // 3  # k: the ticket's rank within its label
        right = label == "bug" or (label == "billing" and k < 5) or (label == "login" and k < 6)
        answers.append(label if right else ("no idea" if label == "billing" else "billing"))
        conf.append(0.9 if label == "bug" else 0.75 if right else 0.65)
    return answers, conf


# By hand: accuracy 21/30 = 0.7.
# billing: tp 5, fp 4, fn 5 -> 10/19; login: tp 6, fp 0, fn 4 -> 12/16; bug: 1. Macro-F1 = 0.758772.
# Micro-F1: tp 21, fp 4, fn 9 -> 42/55 = 0.763636 (the 5 unlabelled answers are misses but no label's fp).
# ECE, 10 bins: bin [0.9, 1]: 10 right at 0.9 -> 1.0; bin [0.7, 0.8): 11 right at 0.75 -> 2.75;
# bin [0.6, 0.7): 9 wrong at 0.65 -> 5.85. (1.0 + 2.75 + 5.85) / 30 = 0.32.
ACC, MACRO, MICRO, ECE = 0.7, (10 / 19 + 12 / 16 + 1) / 3, 42 / 55, 0.32
HAND_METRICS = ["macro_f1", "accuracy", "micro_f1"]


def _confident(project, answers, conf, name):
    return evaluate(project, Confident(answers, conf, name), load_suite(project, "golden.jsonl"), HAND_METRICS)


def test_corpus_metrics_are_corpus_values_with_their_own_bootstrap(project):
    from sklearn.metrics import f1_score

    answers, conf = _hand_case()
    report = _confident(project, answers, conf, "hand")
    m = report["metrics"]
    assert m["accuracy"]["mean"] == pytest.approx(ACC) and m["accuracy"]["method"] == "wilson"
    refs = [LABELS[i % 3] for i in range(30)]
    preds = [e["label"] or "none" for e in report["examples"]]
    assert MACRO == pytest.approx(f1_score(refs, preds, labels=LABELS, average="macro", zero_division=0))
    for name, value in (("macro_f1", MACRO), ("micro_f1", MICRO)):
        assert m[name]["mean"] == pytest.approx(value) and m[name]["score"] == pytest.approx(value)
        assert m[name]["method"] == "bootstrap (corpus)" and m[name]["low"] < value < m[name]["high"]
        # Not the accuracy's Wilson interval relabelled, as it used to be.
        assert (m[name]["low"], m[name]["high"]) != pytest.approx((m["accuracy"]["low"], m["accuracy"]["high"]))
    c = report["calibration"]
    assert c["ece"] == pytest.approx(ECE) and c["low"] <= ECE <= c["high"] and c["n"] == 30 and c["n_bins"] == 10
    assert [b["n"] for b in c["bins"]][6:] == [9, 11, 0, 10]
    assert report["examples"][0]["confidence"] == 0.75 and report["examples"][0]["raw"] == "raw answer 0"


def test_eval_report_prints_and_emits_the_true_numbers(project, cli):
    answers, conf = _hand_case()
    report = _confident(project, answers, conf, "hand")
    out = cli("reports", "show", report["id"], "--project", project.root).stdout
    for name, value in (("macro_f1", MACRO), ("accuracy", ACC), ("micro_f1", MICRO), ("ECE", ECE)):
        assert f"{name:<14} {value:.4f}" in out, out
    assert "(bootstrap (corpus))" in out and "10 equal-width bins" in out
    data = json.loads(cli("reports", "show", report["id"], "--project", project.root, "--json").stdout)
    assert data["metrics"]["macro_f1"]["mean"] == pytest.approx(MACRO)
    assert data["metrics"]["micro_f1"]["mean"] == pytest.approx(MICRO)
    assert data["calibration"]["ece"] == pytest.approx(ECE)
    short = cli("reports", "show", report["id"], "--project", project.root, "--short").stdout
    assert f"macro_f1       {MACRO:.4f} [" in short and "latency" not in short


def test_compare_bootstraps_the_corpus_value_of_macro_f1(project):
    answers, conf = _hand_case()
    a = _confident(project, answers, conf, "hand")
    b = _confident(project, [LABELS[i % 3] for i in range(30)], [0.9] * 30, "perfect")
    d = compare(a, b)["metrics"]
    assert d["macro_f1"]["delta"] == pytest.approx(1 - MACRO) and d["macro_f1"]["a"] == pytest.approx(MACRO)
    assert d["micro_f1"]["delta"] == pytest.approx(1 - MICRO)
    assert d["accuracy"]["delta"] == pytest.approx(1 - ACC)  # three different deltas, not one relabelled
    assert d["macro_f1"]["test"] == "paired randomization (corpus)" and d["macro_f1"]["significant"]
    assert d["macro_f1"]["low"] <= d["macro_f1"]["delta"] <= d["macro_f1"]["high"]
    # 9 of 30 answers differ: McNemar needs this many examples for 5 points at 80% power.
    from tailorlm.eval.stats import paired_sample_size

    assert d["accuracy"]["power"]["discordance"] == pytest.approx(0.3)
    assert d["accuracy"]["power"]["n_needed"] == paired_sample_size(0.3, 0.05) == 980


def _ladder(project, reports, primary):
    """A ladder report assembled from real eval reports by the ladder's own functions."""
    from types import SimpleNamespace

    from tailorlm.eval.compare import ladder_power
    from tailorlm.ladder.chart import write_charts
    from tailorlm.ladder.run import _brief, _row, recommend

    rows = [_row(SimpleNamespace(label=r["subject"].split(":")[1], kind="zero_shot"), r, primary) for r in reports]
    metrics = list(reports[0]["metrics"])
    ladder = {"id": "ladder-hand", "kind": "ladder", "suite": reports[0]["suite"], "primary": primary,
              "metrics": metrics, "margin": 0.02, "rungs": rows,
              "comparisons": [_brief(compare(a, b, metrics)) for a, b in zip(reports, reports[1:])],
              "recommendation": recommend(rows, reports, primary, 0.02), "leakage": {"pools": [], "records": 0}}
    ladder["power"] = ladder_power(ladder)
    folder = project.artifacts("reports") / ladder["id"]
    folder.mkdir(parents=True)
    ladder.update(write_charts(ladder, folder, project.root))
    ladder["path"] = str((folder / "ladder.json").relative_to(project.root))
    (folder / "ladder.json").write_text(json.dumps(ladder))
    return ladder


def test_ladder_table_json_and_html_show_corpus_values_ece_and_power(project, cli):
    answers, conf = _hand_case()
    hand = _confident(project, answers, conf, "hand")
    close = list(answers)
    close[15] = "billing"  # one more right answer: a difference no 30-example suite can detect
    near = _confident(project, close, conf, "near")
    ladder = _ladder(project, [hand, near], "macro_f1")
    q = ladder["rungs"][0]["quality"]
    cell = f"{MACRO:.3f} [{q['low']:.3f}, {q['high']:.3f}]"

    out = cli("reports", "show", "ladder-hand", "--project", project.root).stdout
    row = next(line for line in out.splitlines() if line.lstrip().startswith("hand"))
    assert cell in row and f"{ECE:.3f}" in row, out
    assert "macro_f1 [95% CI]" in out and "ECE" in out
    said = " ".join(out.split())  # the console wraps long lines at 80 columns
    assert "30 golden examples cannot detect a 5-point difference at 80% power" in said
    assert "hand -> near: +2.5 points, not significant; a difference that size needs about" in said

    data = json.loads(cli("reports", "show", "ladder-hand", "--project", project.root, "--json").stdout)
    assert data["rungs"][0]["quality"]["mean"] == pytest.approx(MACRO)
    assert data["rungs"][0]["metrics"]["micro_f1"]["mean"] == pytest.approx(MICRO)
    assert data["rungs"][0]["calibration"]["ece"] == pytest.approx(ECE)
    assert data["power"]["pairs"][0]["n_needed"] > 30 and data["power"]["warnings"]
    wider = json.loads(cli("reports", "show", "ladder-hand", "--delta", "0.3", "--project", project.root,
                           "--json").stdout)
    assert wider["power"]["pairs"][0]["n_needed"] < data["power"]["pairs"][0]["n_needed"]

    page = (project.root / ladder["chart_html"]).read_text()
    assert cell in page and f"{MICRO:.3f} [" in page and f"{ACC:.3f} [" in page
    assert "data:image/png;base64," in page and "10 equal-width bins" in page and "cannot detect" in page


def test_power_against_pairs_with_the_other_reports_on_the_suite(project):
    from tailorlm.eval.compare import power_against
    from tailorlm.eval.stats import paired_sample_size

    answers, conf = _hand_case()
    hand = _confident(project, answers, conf, "hand")
    alone = power_against(project, hand)
    assert alone["pairs"] == [] and "no other report" in alone["note"]
    _confident(project, [LABELS[i % 3] for i in range(30)], [0.9] * 30, "perfect")
    p = power_against(project, hand, delta=0.1)
    assert [x["against"] for x in p["pairs"]] == ["shop:perfect"] and p["metric"] == "macro_f1"
    assert p["pairs"][0]["n_needed"] == paired_sample_size(0.3, 0.1)
