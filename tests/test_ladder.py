"""The ladder end to end on a tiny model, its leakage check, and the recommendation rule."""

import json

import pytest

from tailorlm.data.pipeline import prepare
from tailorlm.data.versions import resolve
from tailorlm.errors import TailorError
from tailorlm.ladder.run import recommend, run_ladder
from tailorlm.project import Project
from tests.helpers import write_shop

LABELS = ["billing", "login", "bug"]
TOPICS = {"billing": ["invoice {n} was charged twice", "please refund order {n}", "card declined on renewal {n}",
                      "vat number missing on bill {n}"],
          "login": ["password reset mail {n} never arrives", "sso redirect loops for user {n}",
                    "two factor code {n} rejected", "locked out after attempt {n}"],
          "bug": ["app crashes when opening file {n}", "export button {n} does nothing",
                  "sync stuck at item {n}", "preview of image {n} is blank"]}


def _tickets(offset: int, per_template: int):
    rows = []
    for label, templates in TOPICS.items():
        for t, template in enumerate(templates):
            for k in range(per_template):
                n = offset + 10 * t + k
                rows.append({"id": f"{label}-{n}", "messages": [{"role": "user", "content": template.format(n=n)},
                                                                 {"role": "assistant", "content": label}], "label": label})
    return rows


def make_project(root, tiny_model_dir, rungs: str, leak: bool = False):
    train = _tickets(0, 3)
    golden = [{"id": f"g-{r['id']}", "input": r["messages"][:1], "reference": r["label"], "labels": [r["label"]]}
              for r in _tickets(500, 1)]
    if leak:
        train.append({"id": "planted", "messages": golden[4]["input"] + [{"role": "assistant", "content": "login"}],
                      "label": "login"})
    docs = {"billing.md": "# Billing\n\nRefunds take five days. Invoices are monthly.\n",
            "login.md": "# Login\n\nReset passwords from the sign-in page. SSO uses SAML.\n",
            **{f"{topic}.md": f"# {topic.title()}\n\nHow {topic} works in the app, step by step.\n"
               for topic in ("sync", "export", "preview", "storage")}}
    write_shop(root, tiny_model_dir, train, golden, rungs, docs=docs, metrics="accuracy, macro_f1",
               extra="rag: {chunk_tokens: 64}\nprices: {cpu_hour: 0.05}\n")
    (root / "prompts").mkdir()
    (root / "prompts" / "default.md").write_text("{description} Answer with one of: {labels}.\n")
    project = Project.load(root)
    prepare(project)
    return project


RUNGS = """  - {kind: zero_shot}
  - {kind: few_shot, name: static, k: 3}
  - {kind: few_shot, name: similar, k: 2, selection: similar}
  - {kind: rag, k: 1}
  - {kind: sft, train: {max_steps: 2, eval_steps: 1, batch_size: 4, micro_batch_size: 4}}
  - {kind: hybrid, model: sft, k: 1}
"""


def test_ladder_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir):
    from tailorlm.rag.documents import index_documents
    from tailorlm.rag.index import RagIndex

    project = make_project(tmp_path / "p", tiny_model_dir, RUNGS)
    docs, _ = index_documents(project, None)
    RagIndex.for_project(project).build(docs)
    seen = []
    ladder = run_ladder(project, log=seen.append, on_progress=lambda *a: None)

    names = [r["name"] for r in ladder["rungs"]]
    assert names == ["zero_shot", "static", "similar", "rag", "sft", "hybrid"]
    assert all(r["quality"]["n"] == 12 and r["errors"] == 0 for r in ladder["rungs"])
    assert all(0 <= r["quality"]["low"] <= r["quality"]["mean"] <= r["quality"]["high"] <= 1 for r in ladder["rungs"])
    sft, hybrid = ladder["rungs"][4], ladder["rungs"][5]
    assert sft["model_version"] == hybrid["model_version"] == "shop:sft@v1"
    assert project.store.get_alias("model", "shop", "ladder.sft") == "shop:sft@v1"
    assert len(ladder["comparisons"]) == 5 and ladder["recommendation"]["rung"] in names
    assert ladder["recommendation"]["reason"]
    assert ladder["leakage"]["leaks"] == 0 and ladder["leakage"]["pools"]
    assert (project.root / ladder["chart_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (project.root / ladder["chart_html"]).read_text()
    assert ladder["recommendation"]["rung"] in page and "<svg" in page
    saved = json.loads((project.root / ladder["path"]).read_text())
    assert saved["recommendation"] == ladder["recommendation"]
    # 12 golden examples separate nothing at 5 points: the ladder says so, with the size it would take.
    assert saved["power"]["n"] == 12 and len(saved["power"]["pairs"]) == 5
    assert all(p["n_needed"] > 12 for p in saved["power"]["pairs"]) and "cannot detect" in saved["power"]["warnings"][0]
    assert "Power</h2>" in page
    # The rungs' prompts really differ: few-shot turns and retrieved sources are in the reports.
    report = json.loads((project.root / ".tailor" / "reports" / ladder["rungs"][2]["report"] / "report.json").read_text())
    assert all(len(e["shots"]) == 2 for e in report["examples"])
    report = json.loads((project.root / ".tailor" / "reports" / ladder["rungs"][3]["report"] / "report.json").read_text())
    assert all(e["retrieved"] for e in report["examples"])

    # A second run reuses the trained model and every saved answer.
    runs = len(project.store.select("runs"))
    again = run_ladder(project, log=lambda m: None)
    assert len(project.store.select("runs")) == runs
    assert [r["report"] for r in again["rungs"]] == [r["report"] for r in ladder["rungs"]]


def test_leakage_check_catches_a_planted_eval_example(tmp_path, tiny_model_dir):
    project = make_project(tmp_path / "p", tiny_model_dir, "  - {kind: zero_shot}\n  - {kind: few_shot, k: 2}\n",
                           leak=True)
    with pytest.raises(TailorError, match=r"leak.*eval g-login-500 is in tickets@\w+:train as planted \(same text\)"):
        run_ladder(project, log=lambda m: None)


def _fake(name, scores):
    report = {"id": name, "subject": name, "suite": {"name": "s", "version": "v"},
              "metrics": {"accuracy": {"mean": sum(scores) / len(scores)}},
              "examples": [{"id": str(i), "scores": {"accuracy": s}, "prediction": ""} for i, s in enumerate(scores)]}
    row = {"name": name, "quality": {"mean": sum(scores) / len(scores), "low": 0, "high": 1, "n": len(scores)}}
    return row, report


def test_recommendation_is_the_cheapest_rung_not_significantly_below_the_best():
    n = 60
    zero = _fake("zero_shot", [0] * n)
    few = _fake("few_shot", [1] * 40 + [0] * 20)
    sft = _fake("sft", [1] * 42 + [0] * 18)  # two more right: not a significant gain over few_shot
    rec = recommend([zero[0], few[0], sft[0]], [zero[1], few[1], sft[1]], "accuracy", 0.02)
    assert rec["rung"] == "few_shot" and "not significantly below the best, sft" in rec["reason"]

    strong = _fake("sft", [1] * 58 + [0] * 2)  # many more right: climbing pays
    rec = recommend([zero[0], few[0], strong[0]], [zero[1], few[1], strong[1]], "accuracy", 0.02)
    assert rec["rung"] == "sft" and "significantly worse" in rec["reason"]
    # With a margin wider than the gap, the cheaper rung is good enough again.
    assert recommend([few[0], strong[0]], [few[1], strong[1]], "accuracy", 0.5)["rung"] == "few_shot"


def test_raft_data_carries_retrieved_sources_and_distractors_like_the_rag_prompt(tmp_path, tiny_model_dir):
    from tailorlm.config import RungConfig
    from tailorlm.ladder.raft import build_raft_dataset, raft_records
    from tailorlm.rungs.build import build_rung, train_records
    from tailorlm.models.base import GenParams
    from tailorlm.models.pool import ModelPool
    from tailorlm.rag.documents import index_documents
    from tailorlm.rag.index import RagIndex
    from tailorlm.rungs.rag import GUARD, LABEL_GUARD

    project = make_project(tmp_path / "p", tiny_model_dir, "  - {kind: zero_shot}\n")
    docs, _ = index_documents(project, None)
    RagIndex.for_project(project).build(docs)
    rung = build_rung(project, RungConfig(kind="rag", k=2), ModelPool(project))
    _, records = train_records(project, "tickets")
    raft = raft_records(rung, records, distractors=1, p_no_oracle=0.0)
    assert len(raft) == len(records)
    for before, after in zip(records, raft):
        msgs = after.content["messages"]
        question = before.content["messages"][0]["content"]
        # The training prompt is exactly what the rag rung builds at answer time, with these sources.
        hits = [h for h in rung.index.chunks() if h.id in after.meta["raft"]["sources"]]
        hits.sort(key=lambda h: after.meta["raft"]["sources"].index(h.id))
        assert msgs[:-1] == rung.prepare([{"role": "user", "content": question}], GenParams(max_tokens=64), hits=hits).messages
        assert question in msgs[-2]["content"] and "[2]" in msgs[-2]["content"]
        # A label task: the sources are background (no call for citations), and the label list comes last.
        assert LABEL_GUARD in msgs[0]["content"] and GUARD not in msgs[0]["content"]
        assert msgs[-2]["content"].endswith(f"Question: {question}\n\nReply with the label only, one of: billing, login, bug.")
        assert msgs[-1] == before.content["messages"][-1]  # the answer is unchanged
        assert after.meta["raft"]["oracle"] == 1 and after.meta["raft"]["distractors"] == 1
    top = {h.id for h in rung.retrieve(records[0].content["messages"][0]["content"])}
    blind = raft_records(rung, records[:1], p_no_oracle=1.0)[0]
    assert blind.meta["raft"]["oracle"] == 0 and not set(blind.meta["raft"]["sources"]) & top

    manifest = build_raft_dataset(project, rung, "tickets")
    assert manifest["name"] == "tickets-raft" and manifest["parents"] and manifest["splits"]["train"] == len(records)
    # Its manifest reads like any prepared version's: show, diff and report name the raft step.
    from tailorlm.data.report import build_report
    from tailorlm.data.versions import diff_versions

    assert [s["step"] for s in manifest["steps"]] == ["raft"]
    assert manifest["steps"][0]["kept"] == sum(manifest["splits"].values()) and manifest["steps"][0]["dropped"] == {}
    changed = diff_versions(project, "tickets", manifest["id"])
    assert "raft" in json.dumps(changed)
    report = build_report(project, manifest["id"])
    assert [f["stage"] for f in report["funnel"]][-1] == "raft"


def test_hybrid_rung_with_raft_trains_on_retrieval_prompts_and_is_served_with_retrieval(tmp_path, tiny_model_dir):
    from tailorlm.rungs.build import rung_for_model
    from tailorlm.models.pool import ModelPool
    from tailorlm.rag.documents import index_documents
    from tailorlm.rag.index import RagIndex

    rungs = "  - {kind: hybrid, raft: true, k: 2, train: {max_steps: 1, batch_size: 4, micro_batch_size: 4}}\n"
    project = make_project(tmp_path / "p", tiny_model_dir, rungs)
    docs, _ = index_documents(project, None)
    RagIndex.for_project(project).build(docs)
    ladder = run_ladder(project, log=lambda m: None)
    version = ladder["rungs"][0]["model_version"]
    row = project.store.select("model_versions", id=version)[0]
    assert row["dataset_version"].startswith("tickets-raft@")
    rung = rung_for_model(project, version, ModelPool(project))
    assert rung.kind == "hybrid" and rung.index is not None  # served the way it was trained: with sources


def _row(name, mean, low, high, p50, p95, cost, ece=None):
    return {"name": name, "kind": "zero_shot", "quality": {"mean": mean, "low": low, "high": high, "n": 320},
            "metrics": {"accuracy": {"mean": mean, "low": low, "high": high}}, "latency": {"p50": p50, "p95": p95},
            "cost_per_1k": {"usd_per_1k": cost}, "errors": 0,
            "calibration": None if ece is None else {"ece": ece, "low": 0.0, "high": 1.0}}


def test_the_ladder_table_fits_80_columns_without_cutting_names_or_intervals():
    from rich.console import Console

    from tailorlm.cli.eval import print_ladder

    names = ["classic", "zero_shot", "few_shot_static", "few_shot_similar", "rag", "sft", "hybrid"]
    rows = [_row(n, 0.734, 0.683, 0.780, 1.234, 12.345, 0.0123, 0.081) for n in names]
    ladder = {"suite": {"name": "golden", "version": "1c0e9b2a", "n": 320}, "primary": "accuracy",
              "metrics": ["accuracy"], "rungs": rows, "comparisons": [], "path": "ladder.json", "chart_png": "l.png",
              "chart_html": "l.html", "recommendation": {"rung": "few_shot_similar", "reason": "the cheapest that holds"}}
    console = Console(width=80, record=True)
    print_ladder(ladder, console=console)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    for n in names:
        row = next(line for line in lines if line.split() and line.split()[0] == n)
        assert "0.734 [0.683, 0.780]" in row and "1234/12345" in row and "0.081" in row, text
    assert "few_shot_similar *" in text and "…" not in text
    console = Console(width=80, record=True)
    print_ladder(ladder, console=console, short=True)
    assert "Recommended: few_shot_similar" in console.export_text() and "chart:" not in console.export_text()


def test_eval_power_pairs_with_the_other_rungs_report(tmp_path, tiny_model_dir, cli):
    project = make_project(tmp_path / "p", tiny_model_dir, "  - {kind: zero_shot}\n  - {kind: few_shot, k: 2}\n")
    first = json.loads(cli("eval", "zero_shot", "--project", project.root, "--json").stdout)
    assert "power" not in first
    out = json.loads(cli("eval", "few_shot", "--power", "--delta", "0.2", "--project", project.root, "--json").stdout)
    power = out["power"]
    assert power["delta"] == 0.2 and power["n"] == 12 and [p["against"] for p in power["pairs"]] == ["shop:zero_shot"]
    from tailorlm.eval.stats import paired_sample_size

    assert power["pairs"][0]["n_needed"] == paired_sample_size(power["pairs"][0]["discordance"], 0.2)
    text = cli("eval", "few_shot", "--power", "--project", project.root).stdout
    assert "power: examples needed to detect 5 points of accuracy at 80% power" in text and "vs shop:zero_shot" in text


def test_train_sweep_chooses_on_validation_and_records_every_candidate(tmp_path, tiny_model_dir):
    rungs = ("  - {kind: sft, train: {max_steps: 3, eval_steps: 1, batch_size: 4, micro_batch_size: 4,\n"
             "                       sweep: {learning_rate: [1.0e-5, 3.0e-3], lora_r: [4]}}}\n")
    project = make_project(tmp_path / "p", tiny_model_dir, rungs)
    seen = []
    ladder = run_ladder(project, log=seen.append)
    row = ladder["rungs"][0]
    sweep = row["sweep"]
    manifest = resolve(project, "tickets")
    assert sweep["on"] == f"{manifest['id']}:validation" and sweep["n"] == manifest["splits"]["validation"]
    assert sweep["by"] == "accuracy" and [c["settings"] for c in sweep["candidates"]] == [
        {"learning_rate": 1e-5, "lora_r": 4}, {"learning_rate": 3e-3, "lora_r": 4}]
    # Two real runs, each scored on validation (never on the golden suite); the best one serves the rung.
    versions = [c["model_version"] for c in sweep["candidates"]]
    assert len(set(versions)) == 2 and len(project.store.select("runs")) == 2
    best = max(range(2), key=lambda i: (sweep["candidates"][i]["score"], -sweep["candidates"][i]["val_loss"], -i))
    assert sweep["chosen"] == best and row["model_version"] == versions[best]
    assert project.store.get_alias("model", "shop", "ladder.sft") == versions[best]
    for c in sweep["candidates"]:
        report = json.loads((project.root / ".tailor" / "reports" / c["report"] / "report.json").read_text())
        assert report["suite"]["name"] == "validation" and not {e["id"] for e in report["examples"]} & {
            e["id"] for e in json.loads((project.root / ".tailor" / "reports" / row["report"] / "report.json")
                                        .read_text())["examples"]}
        assert 0 <= c["score"] <= 1 and c["val_loss"] > 0
    # A second run trains nothing: every candidate is reused.
    run_ladder(project, log=lambda m: None)
    assert len(project.store.select("runs")) == 2


def test_train_sweep_rejects_an_unknown_setting(tmp_path, tiny_model_dir):
    project = make_project(tmp_path / "p", tiny_model_dir, "  - {kind: sft, train: {sweep: {learnin_rate: [1]}}}\n")
    with pytest.raises(TailorError, match="unknown training setting.*learnin_rate"):
        run_ladder(project, log=lambda m: None)
