"""The advisor's decisions on table-driven project facts (one row per branch), fact gathering from a
real project, and `tailor advise`."""

import copy
import json

import pytest

from tailorlm.advise.advisor import decide
from tailorlm.config import AdviseConfig

BASE = {
    "task": {"type": "qa", "labels": 0, "knowledge_changes": "monthly"},
    "examples": {"real": 0, "synthetic": 0, "tokens": 0, "datasets": ["tickets"], "raw_sources": [], "prepared": True},
    "preferences": {"pairs": 0, "datasets": [], "raw_sources": [], "prepared": True},
    "documents": {"n": 0, "tokens": 0, "datasets": [], "raw_sources": [], "prepared": True},
    "eval": {"n": 40, "suite": "golden", "from": None},
    "few_shot_k": 4, "max_share": 0.3, "advise": AdviseConfig().model_dump(), "ladder": None, "pretrain": None,
}


def facts(**over) -> dict:
    """BASE with nested overrides: facts(examples={"real": 180}, advise={"latency_p95_ms": 500})."""
    out = copy.deepcopy(BASE)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


def rung(kind, mean, low=None, high=None, name=None, p95=None, cost=None):
    low = mean - 0.05 if low is None else low
    high = mean + 0.05 if high is None else high
    return {"name": name or kind, "kind": kind, "quality": {"mean": mean, "low": low, "high": high},
            "latency": {"p50": p95, "p95": p95}, "cost_per_1k": {"usd_per_1k": cost, "basis": "cpu_hour"},
            "throughput": {"queries_per_s": 1.0, "completion_tokens_per_s": 20.0}}


def ladder(*rungs, tests=None, recommendation=None, primary="accuracy"):
    return {"id": "lad-1", "path": ".tailor/reports/lad-1/ladder.json", "suite": {"name": "golden", "version": "v1", "n": 40},
            "primary": primary, "rungs": list(rungs), "tests": tests or [],
            "recommendation": recommendation or {"rung": max(rungs, key=lambda r: r["quality"]["mean"])["name"],
                                                 "reason": "best"}}


# fine-tuning and prompting far apart (paid), or close together (did not pay)
ZS, FS = rung("zero_shot", 0.05), rung("few_shot", 0.30)
PO = rung("prompt_opt", 0.45)  # beats FS: its interval does not overlap
RAG = rung("rag", 0.55)
SFT_WIN, SFT_TIE = rung("sft", 0.70), rung("sft", 0.33)
HYB = rung("hybrid", 0.82)
CLASSIC = rung("classic", 0.72)
CLS = {"type": "classification", "labels": 8}
BIG = {"n": 5000, "tokens": 12e9, "datasets": ["corpus"], "prepared": True}
PRICED = {"flops": 1e21, "cost": {"amount": 4000.0, "reason": "..."}}

CASES = [
    # id, facts, expected rung, action, text expected somewhere in reasons/missing/next_steps/warnings
    ("nothing-yet", facts(eval={"n": 0}), "zero_shot", "measure", "needs a golden suite"),
    ("first-run-lists-ready-rungs", facts(examples={"real": 10}, documents={"n": 5, "tokens": 4000}),
     "zero_shot", "measure", "Ready to measure beside it in the same ladder run: few-shot, RAG."),
    ("too-few-for-few-shot", facts(examples={"real": 2}), "zero_shot", "measure",
     "few-shot needs ≥ 4 labelled examples; you have 2"),
    ("prompt-opt-after-few-shot", facts(examples={"real": 180}, ladder=ladder(ZS, FS)), "prompt_opt", "climb",
     "Next rung: prompt optimisation (searched on validation)."),
    ("prompt-opt-needs-a-validation-split", facts(examples={"real": 12}, ladder=ladder(ZS, FS)), "prompt_opt",
     "collect_data", "prompt optimisation needs ≥ 20 labelled examples (demonstrations, and ≥ 16 in a validation split"),
    ("fine-tune-lacks-data", facts(examples={"real": 180}, ladder=ladder(ZS, FS, PO)), "sft", "collect_data",
     "fine-tuning needs ≥ 500 good examples; you have 180 (180 real); synthetic data may add 77 more within the 30% cap"),
    ("synthetic-counts-within-cap", facts(examples={"real": 400, "synthetic": 100}, ladder=ladder(ZS, FS, PO)), "sft", "climb",
     "Next rung: fine-tuning."),
    ("fine-tune-ready", facts(examples={"real": 600}, ladder=ladder(ZS, FS, PO)), "sft", "climb", "tailor train sft --dataset tickets"),
    ("frequent-knowledge-goes-hybrid", facts(task={"knowledge_changes": "weekly"}, examples={"real": 600},
                                             documents={"n": 20, "tokens": 30000}, ladder=ladder(ZS, FS, RAG)),
     "hybrid", "climb", "Fine-tuning alone is skipped: knowledge changes weekly"),
    ("fine-tune-did-not-pay-intervals", facts(examples={"real": 600}, ladder=ladder(ZS, FS, SFT_TIE)), "few_shot", "stay",
     "did not beat few_shot significantly (0.330 [0.280, 0.380] vs 0.300 [0.250, 0.350]: the 95% intervals overlap)"),
    ("fine-tune-did-not-pay-paired-test", facts(examples={"real": 600}, ladder=ladder(
        ZS, FS, SFT_WIN, tests=[{"a": "few_shot", "b": "sft", "delta": 0.4, "p_value": 0.3, "test": "mcnemar", "n": 40}])),
     "few_shot", "stay", "paired mcnemar: delta +0.400, p = 0.3, n = 40"),
    ("paired-test-says-it-paid", facts(examples={"real": 600}, documents={"n": 3, "tokens": 900}, ladder=ladder(
        ZS, FS, rung("sft", 0.34), tests=[{"a": "sft", "b": "few_shot", "delta": -0.04, "p_value": 0.01, "test": "mcnemar",
                                           "n": 40}])),
     "rag", "climb", "The last climb paid: sft beat the best cheaper rung (paired mcnemar: delta +0.040, p = 0.01, n = 40)"),
    ("skipped-cheaper-rung-after-a-win", facts(examples={"real": 600}, documents={"n": 3, "tokens": 900},
                                               ladder=ladder(ZS, SFT_WIN)),
     "few_shot", "climb", "few-shot was skipped; measure it: it may match sft for less."),
    ("skipped-cheaper-rung-after-a-loss", facts(examples={"real": 600}, documents={"n": 3, "tokens": 900},
                                                ladder=ladder(FS, SFT_TIE)),
     "zero_shot", "climb", "prompting was skipped; measure it before climbing further."),
    ("quality-target-met", facts(examples={"real": 600}, advise={"quality_target": 0.5}, ladder=ladder(ZS, FS, RAG),
                                 documents={"n": 3, "tokens": 900}),
     "rag", "stay", "meets the quality target"),
    ("latency-pushes-to-fine-tuning", facts(examples={"real": 600}, advise={"latency_p95_ms": 500}, documents={"n": 3, "tokens": 900},
                                            ladder=ladder(ZS, FS, rung("rag", 0.55, p95=2.0))),
     "sft", "climb", "p95 latency 2000 ms > 500 ms"),
    ("preference-tuning-next", facts(examples={"real": 600}, preferences={"pairs": 800, "datasets": ["prefs"]},
                                     ladder=ladder(ZS, FS, SFT_WIN)), "dpo", "climb", "tailor train dpo --dataset prefs"),
    ("preference-pairs-too-few", facts(examples={"real": 600}, preferences={"pairs": 100}, ladder=ladder(ZS, FS, SFT_WIN)),
     "dpo", "collect_data", "DPO needs ≥ 500 preference pairs; you have 100"),
    ("ladder-climbed-as-far-as-data-goes", facts(examples={"real": 600}, ladder=ladder(ZS, FS, SFT_WIN)), "sft", "stay",
     "climbed as far as the data supports"),
    ("pre-training-fits-the-budget", facts(examples={"real": 600}, documents=BIG, advise={"training_budget": 5000.0},
                                           pretrain=PRICED, ladder=ladder(ZS, FS, RAG, SFT_WIN, HYB)),
     "pretrain", "climb", "12B unique tokens; about 4000 within the budget of 5000"),
    ("pre-training-unpriced", facts(examples={"real": 600}, documents=BIG, advise={"training_budget": 5000.0},
                                    pretrain={"flops": 1e21, "cost": {"amount": None, "reason": "no price for A100"}},
                                    ladder=ladder(ZS, FS, RAG, SFT_WIN, HYB)),
     "hybrid", "stay", "pre-training cost unknown: no price for A100"),
    ("pre-training-over-budget", facts(examples={"real": 600}, documents=BIG, advise={"training_budget": 1000.0},
                                       pretrain=PRICED, ladder=ladder(ZS, FS, RAG, SFT_WIN, HYB)),
     "hybrid", "stay", "pre-training costs about 4000, over the training budget of 1000"),
    ("pre-training-without-a-budget", facts(examples={"real": 600}, documents=BIG, pretrain=PRICED,
                                            ladder=ladder(ZS, FS, RAG, SFT_WIN, HYB)),
     "hybrid", "stay", "set advise.training_budget"),
    ("pre-training-needs-dedup", facts(examples={"real": 600}, documents={**BIG, "prepared": False, "raw_sources": ["corpus"]},
                                       advise={"training_budget": 5000.0}, pretrain=PRICED,
                                       ladder=ladder(ZS, FS, RAG, SFT_WIN, HYB)),
     "hybrid", "stay", "prepare (deduplicate) the corpus"),
    ("raw-sources-get-prepared-first", facts(examples={"real": 30, "prepared": False, "raw_sources": ["tickets"]}),
     "zero_shot", "measure", "tailor data prepare tickets"),
    ("frequent-knowledge-without-documents", facts(task={"knowledge_changes": "daily"}, examples={"real": 30}),
     "zero_shot", "measure", "RAG needs documents"),
    ("synthetic-over-the-cap", facts(examples={"real": 100, "synthetic": 300}), "zero_shot", "measure",
     "300 synthetic examples exceed the 30% cap"),
    ("empty-ladder", facts(ladder={**ladder(ZS), "rungs": []}), "zero_shot", "measure", "holds no scored rung"),
    ("golden-suite-too-small-to-tell", facts(examples={"real": 600}, ladder=ladder(ZS, FS, SFT_TIE, tests=[
        {"a": "few_shot", "b": "sft", "delta": 0.03, "p_value": 0.6, "test": "mcnemar", "n": 40, "discordance": 0.25,
         "n_needed": 850, "power_delta": 0.05}])),
     "few_shot", "stay", "a larger golden suite: telling sft from few_shot apart by 5 points at 80% power takes about "
                         "850 examples (they disagree on 25% of the 40; McNemar sample size, Connor 1987); you have 40"),
    # classification: the classic baseline is measured first, and kept when nothing above it pays
    ("classification-measures-classic-first", facts(task=CLS, examples={"real": 40}), "classic", "measure",
     "Ready to measure beside it in the same ladder run: prompting, few-shot, prompt optimisation (searched on validation)."),
    ("classic-needs-examples-per-label", facts(task=CLS, examples={"real": 30}), "zero_shot", "measure",
     "the classic baseline needs ≥ 40 labelled examples (5 per label); you have 30"),
    ("classic-skipped-is-measured-next", facts(task=CLS, examples={"real": 600}, ladder=ladder(ZS, FS)),
     "classic", "climb", "the classic baseline (TF-IDF or embeddings + a linear model) was skipped; measure it"),
    ("classic-holds-against-fine-tuning", facts(task=CLS, examples={"real": 600}, ladder=ladder(CLASSIC, ZS, FS, SFT_WIN)),
     "classic", "stay", "did not beat classic significantly (0.700 [0.650, 0.750] vs 0.720 [0.670, 0.770]"),
    ("classic-holds-against-the-best-cheaper-rung", facts(task=CLS, examples={"real": 600}, ladder=ladder(
        rung("classic", 0.70), ZS, rung("few_shot", 0.74), rung("sft", 0.72))),
     "classic", "stay", "classic is cheaper than few_shot and not significantly worse"),
    ("fine-tuning-beats-classic", facts(task=CLS, examples={"real": 600}, ladder=ladder(rung("classic", 0.5), ZS, FS, SFT_WIN)),
     "sft", "stay", "The last climb paid: sft beat the best cheaper rung"),
]


@pytest.mark.parametrize("case, f, want_rung, want_action, text", CASES, ids=[c[0] for c in CASES])
def test_advisor_decisions(case, f, want_rung, want_action, text):
    advice = decide(f)
    said = " | ".join(advice["reasons"] + advice["missing"] + advice["next_steps"] + advice["warnings"])
    assert (advice["rung"], advice["action"]) == (want_rung, want_action), said
    assert text in said, said
    assert [r["kind"] for r in advice["rungs"]] == ["classic", "zero_shot", "few_shot", "prompt_opt", "rag", "sft", "hybrid", "dpo",
                                                    "pretrain"]


def test_every_branch_is_covered_by_a_case():
    actions = {c[3] for c in CASES}
    assert actions == {"measure", "climb", "collect_data", "stay"}
    assert {c[2] for c in CASES} == {"classic", "zero_shot", "few_shot", "prompt_opt", "rag", "sft", "hybrid", "dpo", "pretrain"}


def test_pre_training_is_never_advised_below_ten_billion_tokens():
    f = facts(examples={"real": 600}, documents={**BIG, "tokens": 9.9e9}, advise={"training_budget": 1e9}, pretrain=PRICED,
              ladder=ladder(ZS, FS, RAG, SFT_WIN, HYB))
    advice = decide(f)
    assert advice["rung"] != "pretrain"
    row = next(r for r in advice["rungs"] if r["kind"] == "pretrain")
    assert not row["applicable"] and "≥ 10B unique tokens; you have 9.9B" in row["note"]


def test_serving_choice_respects_the_constraints():
    f = facts(examples={"real": 600}, advise={"max_cost_per_1k": 0.1},
              ladder=ladder(ZS, rung("few_shot", 0.3, cost=0.05), rung("sft", 0.7, cost=0.5)))
    advice = decide(f)
    assert advice["serve"]["rung"] == "few_shot"
    assert decide(facts(advise={"max_cost_per_1k": 0.01}, ladder=ladder(rung("zero_shot", 0.1, cost=0.05))))["serve"]["rung"] is None


def test_lower_is_better_metrics_flip_the_comparison():
    a, b = rung("few_shot", 3.0, 2.9, 3.1), rung("sft", 2.0, 1.9, 2.1)  # perplexity fell: the climb paid
    advice = decide(facts(examples={"real": 600}, ladder=ladder(rung("zero_shot", 4.0), a, b, primary="perplexity")))
    assert advice["rung"] == "sft" and advice["action"] == "stay"
    assert any("The last climb paid" in r for r in advice["reasons"])


# --- gathering facts from a real project ------------------------------------------------------


def _chat(i, synthetic=False, split="train"):
    from tailorlm.data.record import Record

    meta = {"split": split, "source": "tickets"}
    if synthetic:
        meta.update(synthetic=True, teacher="t")
    return Record(f"t{i}{'s' if synthetic else ''}", "chat", {"messages": [
        {"role": "user", "content": f"question number {i} {'synthetic' if synthetic else ''}"},
        {"role": "assistant", "content": f"answer {i}"}]}, meta)


@pytest.fixture
def advised_project(cli, tmp_path):
    from tailorlm.data.versions import write_version
    from tailorlm.project import Project

    cli("init", "acme")
    root = tmp_path / "acme"
    (root / "docs").mkdir()
    (root / "docs" / "a.md").write_text("# Plans\n\nThe Team plan costs 12 dollars per seat per month.\n")
    cfg = (root / "tailor.yaml").read_text().replace("sources: []", "sources:\n  - {name: docs, path: docs/, kind: text}")
    cfg = cfg.replace("  gpu_hour: {}", "  gpu_hour: {}\n  cpu_hour: 0.36\n  api_input_per_1m: 0.5\n  api_output_per_1m: 1.5")
    (root / "tailor.yaml").write_text(cfg + "advise:\n  queries_per_day: 10000\n")
    project = Project.load(root)
    records = {"train": [_chat(i) for i in range(12)] + [_chat(0, synthetic=True)],
               "test": [_chat(i, split="test") for i in range(100, 104)]}
    manifest = {"kind": "chat", "license": None, "parents": [], "sources": [{"name": "tickets", "path": "t.jsonl", "files": []}],
                "steps": [], "accounting": {}, "recipe": {"x": 1}}
    write_version(project, "tickets", records, manifest, [])
    return project


def test_gather_counts_prepared_and_raw_data(advised_project):
    from tailorlm.advise.facts import gather

    f = gather(advised_project)
    assert f["examples"]["real"] == 12 and f["examples"]["synthetic"] == 1  # test split held out
    assert f["examples"]["datasets"] == ["tickets"] and f["examples"]["prepared"]
    assert f["documents"]["n"] == 1 and not f["documents"]["prepared"] and f["documents"]["raw_sources"] == ["docs"]
    assert f["eval"]["n"] == 4  # the golden alias of the test split
    assert f["ladder"] is None
    assert f["pretrain"]["n_params"] == pytest.approx(f["documents"]["tokens"] / 20)
    advice = decide(f)
    assert advice["rung"] == "zero_shot" and any("tailor data prepare docs" in s for s in advice["next_steps"])


def test_a_broken_source_is_reported_not_fatal(advised_project):
    from tailorlm.advise.advisor import advise
    from tailorlm.project import Project

    cfg = advised_project.root / "tailor.yaml"
    cfg.write_text(cfg.read_text().replace("kind: text}", "kind: text}\n  - {name: gone, path: missing.jsonl}"))
    advice = advise(Project.load(advised_project.root))
    assert any(w.startswith("source gone: source path not found") for w in advice["warnings"])


def _write_ladder(project, created="2026-11-21T10:00:00", recommendation="few_shot", name="lad-a", extra=()):
    folder = project.artifacts("reports") / name
    folder.mkdir(parents=True)
    rungs = [rung("zero_shot", 0.05), rung("few_shot", 0.40), *extra]
    rungs[1]["throughput"] = {"queries_per_s": 2.0, "completion_tokens_per_s": 40.0}
    rungs[1]["tokens"] = {"prompt_mean": 500.0, "completion_mean": 20.0}
    (folder / "ladder.json").write_text(json.dumps({
        "id": name, "kind": "ladder", "suite": {"name": "golden", "version": "v1", "n": 4}, "primary": "accuracy",
        "rungs": rungs, "recommendation": {"rung": recommendation, "reason": "best"}, "created_at": created}))


def test_advice_uses_the_newest_ladder_and_prices_inference(advised_project):
    from tailorlm.advise.advisor import advise

    _write_ladder(advised_project, "2026-11-20T10:00:00", "zero_shot", "lad-old")
    _write_ladder(advised_project, "2026-11-21T10:00:00", "few_shot", "lad-new")
    (advised_project.artifacts("reports") / "broken").mkdir()
    (advised_project.artifacts("reports") / "broken" / "ladder.json").write_text("{not json")
    advice = advise(advised_project)
    assert advice["facts"]["ladder"]["id"] == "lad-new"
    # Few-shot paid: next is its refinement, prompt_opt (cheaper than RAG), short of a validation split's examples.
    assert advice["rung"] == "prompt_opt" and advice["action"] == "collect_data"
    search = advice["costs"]["search"]  # its budget of 400 calls, priced as the measured few-shot rung
    assert search["calls"] == 400 and search["seconds"] == pytest.approx(400 / 2.0)
    assert search["self_hosted"]["amount"] == pytest.approx(200 / 3600 * 0.36)
    assert search["api"]["amount"] == pytest.approx(400 * (500 * 0.5 + 20 * 1.5) / 1e6)
    inf = advice["costs"]["inference"]
    assert inf["rung"] == "few_shot" and "ladder lad-new" in inf["measured_on"]
    assert inf["self_hosted"]["usd_per_1k"] == pytest.approx(500 / 3600 * 0.36)  # 1000 queries at 2/s
    assert inf["api"]["usd_per_1k"] == pytest.approx((500 * 0.5 + 20 * 1.5) / 1000)
    assert advice["costs"]["breakeven"]["queries_per_day"] == pytest.approx(0.36 * 24 / (0.28 / 1000))


def test_cli_advise_prints_tables_json_and_html(advised_project, cli):
    out = cli("advise", "-p", advised_project.root, "--json")
    assert out.exit_code == 0, out.output
    advice = json.loads(out.output)
    assert advice["rung"] == "zero_shot" and advice["html"].endswith("advice.html")
    page = (advised_project.root / ".tailor" / "reports" / "advice.html").read_text()
    assert "<h2>Rungs</h2>" in page and "zero_shot" in page
    text = cli("advise", "-p", advised_project.root).output
    assert "next rung" in text and "Facts" in text


def test_fine_tuning_advice_comes_with_its_training_cost(advised_project, tiny_model_dir, monkeypatch):
    import tailorlm.advise.advisor as advisor
    from tailorlm.advise.costs import model_size
    from tailorlm.project import Project

    cfg = advised_project.root / "tailor.yaml"
    cfg.write_text(cfg.read_text().replace("model: smollm2-135m-instruct", f"model: {tiny_model_dir}")
                   .replace("sources:\n  - {name: docs, path: docs/, kind: text}", "sources: []")
                   .replace("  gpu_hour: {}", "  gpu_hour: {L4: 0.8}"))
    project = Project.load(advised_project.root)
    _write_ladder(project, extra=[rung("prompt_opt", 0.60)])
    monkeypatch.setattr(advisor, "FINE_TUNE_MIN_EXAMPLES", 10)  # the fixture has 12 real examples
    advice = advisor.advise(project)
    assert (advice["rung"], advice["action"]) == ("sft", "climb")
    t = advice["costs"]["training"]
    size = model_size(str(tiny_model_dir), 16)
    tokens = advice["facts"]["examples"]["tokens"]
    # `epochs: auto` on a set this small: enough passes that the model sees at least 100 examples.
    n = advice["facts"]["examples"]["real"] + advice["facts"]["examples"]["synthetic"]
    assert n < 34 and t["epochs"] == 100 // n > 1
    assert t["flops"] == pytest.approx((4 * size["n_params"] + 2 * size["trainable_params"]) * tokens * t["epochs"])
    assert t["gpu"]["name"] == "L4" and t["cost"]["amount"] == pytest.approx(t["gpu_hours"] * 0.8)


def _eval_report(project, rid, subject, scores):
    folder = project.artifacts("reports") / rid
    folder.mkdir(parents=True)
    mean = sum(scores) / len(scores)
    (folder / "report.json").write_text(json.dumps({
        "id": rid, "kind": "eval", "subject": subject, "suite": {"name": "golden", "version": "v1", "n": len(scores)},
        "metrics": {"accuracy": {"mean": mean}}, "primary": "accuracy",
        "examples": [{"id": f"e{i}", "scores": {"accuracy": s}, "prediction": str(s)} for i, s in enumerate(scores)]}))


def test_gather_runs_paired_tests_on_the_ladders_eval_reports(advised_project):
    from tailorlm.advise.advisor import advise

    _eval_report(advised_project, "rep-zs", "acme:zero_shot", [0] * 40)
    _eval_report(advised_project, "rep-fs", "acme:few_shot", [1] * 30 + [0] * 10)
    _eval_report(advised_project, "rep-sft", "acme:sft", [1] * 32 + [0] * 8)
    zs, fs, sft = rung("zero_shot", 0.0, 0.0, 0.09), rung("few_shot", 0.75, 0.6, 0.86), rung("sft", 0.8, 0.65, 0.9)
    for r, rid in ((zs, "rep-zs"), (fs, "rep-fs"), (sft, "rep-sft")):
        r["report"] = rid
    folder = advised_project.artifacts("reports") / "lad-x"
    folder.mkdir()
    (folder / "ladder.json").write_text(json.dumps({"id": "lad-x", "kind": "ladder", "primary": "accuracy",
                                                    "suite": {"name": "golden", "version": "v1", "n": 40},
                                                    "rungs": [zs, fs, sft], "recommendation": {"rung": "few_shot"},
                                                    "created_at": "2026-11-21T10:00:00"}))
    advice = advise(advised_project)
    tests = {(t["a"], t["b"]): t for t in advice["facts"]["ladder"]["tests"]}
    assert tests[("zero_shot", "few_shot")]["p_value"] < 0.05 and tests[("zero_shot", "few_shot")]["test"] == "mcnemar"
    assert tests[("few_shot", "sft")]["p_value"] > 0.05  # 2 more right answers of 40 prove nothing
    assert advice["rung"] == "rag"  # sft did not beat few_shot; RAG (documents exist) was skipped
    assert any("paired mcnemar: delta +0.050" in r for r in advice["reasons"])
    # 2 of 40 answers differ between few_shot and sft: far too few examples to detect 5 points.
    assert tests[("few_shot", "sft")]["discordance"] == pytest.approx(0.05)
    assert tests[("few_shot", "sft")]["n_needed"] > 40
    assert any("a larger golden suite: telling sft from few_shot apart" in m for m in advice["missing"])
