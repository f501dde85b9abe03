"""`tailor data prepare` end to end on the shipped example project, with the default steps."""

import json
import shutil
from collections import Counter

import pytest

from tailorlm.data.pipeline import prepare
from tailorlm.data.versions import load_records
from tailorlm.project import Project
from tailorlm.quickstart import example_dir


@pytest.fixture
def example(tmp_path, smol_dir):
    root = tmp_path / "keelbox"
    shutil.copytree(example_dir(), root)
    return Project.load(root)


@pytest.fixture
def prepared(example):
    return example, {m["name"]: m for m in prepare(example)}


def test_prepare_cleans_the_example_and_the_accounting_holds(prepared):
    project, manifests = prepared
    tickets, docs = manifests["tickets"], manifests["docs"]
    for m in (tickets, docs):
        assert m["accounting"]["holds"]
    steps = {s["step"]: s for s in tickets["steps"]}
    assert steps["exact_dedup"]["dropped"] == {"duplicate": 15}
    assert steps["near_dedup"]["dropped"]["near_duplicate"] >= 1
    assert steps["language"]["dropped"] == {"language:de": 1, "language:es": 1}
    records = load_records(project, tickets)
    text = "\n".join(r.joined() for r in records)
    planted = json.loads((project.root / "planted.json").read_text())
    values = [i["value"] for t in planted["tickets"]["pii"] for i in t["items"]]
    assert len(values) >= 20
    for value in values:
        assert value not in text
    assert "[EMAIL]" in text and "[CREDIT_CARD]" in text and "[IBAN]" in text
    doc_steps = {s["step"]: s for s in docs["steps"]}
    assert doc_steps["exact_dedup"]["dropped"] == {"duplicate": 1}  # quickstart.md == getting-started.md
    assert doc_steps["line_dedup"]["stats"]["lines_removed"] >= 16  # the legal footer
    doc_text = "\n".join(r.joined() for r in load_records(project, docs))
    assert planted["docs"]["boilerplate_footer_first_line"] not in doc_text
    for secret in planted["docs"]["pii"]["docs/internal-escalation-runbook.md"]:
        assert secret not in doc_text


def test_split_is_stratified_seeded_and_registers_the_golden_suite(prepared):
    project, manifests = prepared
    m = manifests["tickets"]
    assert set(m["splits"]) == {"train", "validation", "test"}
    n = sum(m["splits"].values())
    assert abs(m["splits"]["test"] - n * 0.1) <= 8  # rounding happens per label
    test = load_records(project, m, "test")
    train = load_records(project, m, "train")
    labels_test = Counter(r.meta["label"] for r in test)
    labels_train = Counter(r.meta["label"] for r in train)
    assert set(labels_test) == set(labels_train)  # every label in both
    assert project.store.get_alias("suite", "tickets", "golden") == f"{m['id']}:test"
    assert not {r.id for r in test} & {r.id for r in train}


def test_rerun_on_unchanged_inputs_gives_the_same_version(prepared):
    project, manifests = prepared
    again = {m["name"]: m for m in prepare(project)}
    assert again["tickets"]["id"] == manifests["tickets"]["id"]
    assert again["tickets"].get("reused") is True
    assert len(project.store.select("dataset_versions", name="tickets")) == 1


def test_changed_config_gives_a_new_version_and_diff_says_why(prepared, cli):
    project, manifests = prepared
    cfg = project.root / "tailor.yaml"
    # Under the example's own `data:` (it carries the pii allowlist): a second `data:` key is an error.
    cfg.write_text(cfg.read_text().replace("\ndata:\n", "\ndata:\n  steps:\n    - validate: {}\n    - normalize: {}\n"
                                           "    - exact_dedup: {}\n    - split: {seed: 7}\n", 1))
    [new] = prepare(Project.load(project.root), ["tickets"])
    assert new["id"] != manifests["tickets"]["id"]
    d = json.loads(cli("data", "diff", manifests["tickets"]["id"], new["id"], "-p", project.root, "--json").output)
    assert "split" in d["steps_changed"] and "pii" in d["steps_changed"]
    assert d["changed"]  # PII no longer redacted: some records' content changed
    listed = json.loads(cli("data", "list", "-p", project.root, "--json").output)["versions"]
    assert [v["latest"] for v in listed if v["name"] == "tickets"] == [False, True]


def test_decontaminate_drops_a_golden_example_planted_in_training_data(example):
    golden = [json.loads(line) for line in (example.root / "golden.jsonl").read_text().splitlines()]
    with open(example.root / "tickets.jsonl", "a") as f:
        leaked = golden[5]
        f.write(json.dumps({"id": "LEAK", "messages": leaked["input"] + [{"role": "assistant", "content": leaked["reference"]}],
                            "label": leaked["reference"]}) + "\n")
    cfg = example.root / "tailor.yaml"
    cfg.write_text(cfg.read_text().replace("path: questions.jsonl", "path: golden.jsonl"))
    [m] = prepare(Project.load(example.root), ["tickets"])
    step = next(s for s in m["steps"] if s["step"] == "decontaminate")
    assert step["dropped"] == {"overlaps_eval": 1}
    assert step["overlaps"][0]["record"] == "LEAK" and step["overlaps"][0]["eval"] == leaked["id"]


def test_export_formats(prepared, cli, tmp_path):
    project, manifests = prepared
    out = tmp_path / "train.jsonl"
    r = cli("data", "export", "tickets", out, "--split", "train", "-p", project.root, "--json")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == manifests["tickets"]["splits"]["train"]
    assert rows[0]["messages"][-1]["role"] == "assistant"
    alpaca = tmp_path / "alpaca.jsonl"
    cli("data", "export", "tickets", alpaca, "--format", "alpaca", "-p", project.root)
    first = json.loads(alpaca.read_text().splitlines()[0])
    assert set(first) >= {"instruction", "input", "output"}
    hf = tmp_path / "hf"
    cli("data", "export", "tickets", hf, "--format", "hf", "-p", project.root)
    from datasets import load_from_disk

    ds = load_from_disk(str(hf))
    assert set(ds) == {"train", "validation", "test"} and len(ds["test"]) == manifests["tickets"]["splits"]["test"]
    refused = cli("data", "export", "docs", tmp_path / "d.jsonl", "--format", "alpaca", "-p", project.root)
    assert refused.exit_code == 2 and "Alpaca export takes chat records" in refused.output


def test_report_writes_html_with_every_section(prepared, cli):
    project, manifests = prepared
    r = cli("data", "report", "tickets", "-p", project.root, "--json")
    rep = json.loads(r.output)
    assert rep["tokens"]["n"] == rep["records"] and sum(b["count"] for b in rep["tokens"]["histogram"]) == rep["records"]
    assert rep["funnel"][0]["stage"] == "read" and rep["funnel"][-1]["out"] == rep["records"]
    assert rep["languages"].get("en", 0) > 0 and rep["pii"].get("EMAIL", 0) > 0
    assert len(rep["samples"]) == 20
    html = open(rep["html"]).read()
    for section in ("Token lengths", "Funnel", "Languages", "PII replaced", "near-duplicate clusters", "Samples for review"):
        assert section in html


def test_data_add_keeps_comments_and_validates(cli, tmp_path):
    cli("init", "p")
    (tmp_path / "p" / "notes.csv").write_text("body,topic\nhello world,a\n")
    r = cli("data", "add", "notes", "notes.csv", "--field", "text=body", "-p", tmp_path / "p")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "p" / "tailor.yaml").read_text()
    assert "# Where raw data comes from" in text  # comments survive
    project = Project.load(tmp_path / "p")
    assert project.config.sources[0].fields == {"text": "body"}
    assert cli("data", "add", "notes", "x.csv", "-p", tmp_path / "p").exit_code == 2  # duplicate name
    assert cli("data", "add", "evil", "../../etc/passwd", "-p", tmp_path / "p").exit_code == 2
    assert cli("data", "add", "other", "more.csv", "-p", tmp_path / "p").exit_code == 0
    assert [s.name for s in Project.load(tmp_path / "p").config.sources] == ["notes", "other"]
