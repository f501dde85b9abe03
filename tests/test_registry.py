"""The typed artifact layer: every artifact round-trips through its type, one name grammar resolves them,
the retired alias spelling still works (saying so once), and every reader finds the same newest report."""

import json
import os

import pytest

from tailorlm.errors import TailorError
from tailorlm.project import Project
from tailorlm.registry import names, reports
from tailorlm.registry.artifacts import Alias, DatasetVersion, Ladder, ModelVersion, Report, StepSummary
from tailorlm.registry.resolve import aliases, dataset, model
from tests.helpers import ScriptedGenerator

LABELS = ["billing", "login", "bug"]


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "tailor.yaml").write_text(
        "name: shop\ntask: {description: Route tickets., type: classification, labels: [billing, login, bug]}\n"
        "sources:\n  - {name: tickets, path: tickets.jsonl, kind: chat}\n"
        "rungs:\n  - {kind: zero_shot}\n")
    rows = [{"id": f"t{i}", "messages": [{"role": "user", "content": f"ticket {i} about {LABELS[i % 3]}"},
                                         {"role": "assistant", "content": LABELS[i % 3]}]} for i in range(24)]
    (root / "tickets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    golden = [{"id": f"g{i}", "input": [{"role": "user", "content": f"question {i}"}], "reference": LABELS[i % 3]}
              for i in range(9)]
    (root / "golden.jsonl").write_text("".join(json.dumps(g) + "\n" for g in golden))
    return Project.load(root)


def _register(project, name="shop", method="sft"):
    from tailorlm.train.registry import register

    return register(project, name, method, "base-model", None, None, adapter_path=".tailor/runs/x/adapter",
                    lineage={"system_prompt": "Route it.", "rung": "sft"}, metrics={"train_loss_last": 0.5})


def test_dataset_version_round_trips_and_matches_the_manifest_on_disk(project):
    from tailorlm.data.pipeline import prepare

    written = prepare(project)[0]
    typed = dataset(project, "tickets")
    on_disk = json.loads((project.root / written["path"] / "manifest.json").read_text())
    assert typed.id == written["id"] == on_disk["id"] and typed.n_records == 24
    assert [s.step for s in typed.steps] == [s["step"] for s in on_disk["steps"]]
    assert typed.accounting.holds and typed.accounting.kept == 24
    assert DatasetVersion.model_validate(typed.to_dict()) == typed
    assert typed.to_dict() == on_disk  # the file on disk is already in the typed shape
    # NAME, NAME@ALIAS and NAME@HASH-prefix all name it
    assert dataset(project, "tickets@latest").id == dataset(project, f"tickets@{typed.content_hash[:6]}").id == typed.id


def test_a_raft_manifest_written_before_the_fix_reads_its_step_by_name():
    old = {"id": "t-raft@abcdef", "name": "t-raft", "kind": "chat", "content_hash": "abcdef" * 10, "path": "x",
           "splits": {"train": 3}, "steps": [{"name": "raft", "params": {"k": 2}}], "unknown_key": 1}
    v = DatasetVersion.model_validate(old)
    assert v.steps[0].step == "raft" and v.steps[0].kept == 0 and v.to_dict()["unknown_key"] == 1
    assert "name" not in v.to_dict()["steps"][0]
    assert StepSummary.model_validate({"step": "dedup", "dropped": {"exact": 2}}).dropped == {"exact": 2}


def test_model_version_and_alias_round_trip_through_the_one_resolver(project):
    row = _register(project)
    project.store.set_alias("model", "shop", "production", row["id"])
    v = model(project, "shop:sft@v1")
    assert isinstance(v, ModelVersion) and v.method == "sft" and v.version == 1 and v.lineage["rung"] == "sft"
    assert ModelVersion.model_validate(v.to_dict()) == v
    assert model(project, "shop@production") == model(project, "shop@latest") == v
    found = {a.alias: a for a in aliases(project, "model", "shop")}
    assert set(found) == {"latest", "production"} and found["production"].ref == "shop@production"
    assert Alias.model_validate(found["production"].to_dict()).target == "shop:sft@v1"
    with pytest.raises(TailorError, match="no model version 'shop@staging'"):
        model(project, "shop@staging")


def test_alias_moves_are_kept_with_what_they_replaced_and_read_back_typed(project):
    from tailorlm.data.pipeline import prepare
    from tailorlm.registry.moves import alias_history, move_alias
    from tailorlm.registry.resolve import alias_target, datasets, summary

    v1, v2 = _register(project), _register(project)  # each moves shop@latest
    first = move_alias(project, "model", "shop", "production", v1["id"], reason="gate passed")
    assert (first.previous, first.target, first.reason) == (None, "shop:sft@v1", "gate passed")
    moved = move_alias(project, "model", "shop", "production", v2["id"], reason="promoted")
    assert moved.previous == "shop:sft@v1" and alias_target(project, "model", "shop", "production") == "shop:sft@v2"
    history = alias_history(project, "model", "shop", "production")
    assert sorted((h.previous or "", h.target, h.reason) for h in history) == [
        ("", "shop:sft@v1", "gate passed"), ("shop:sft@v1", "shop:sft@v2", "promoted")]
    assert all(h.at for h in history)  # the store's time of each move
    assert [h.target for h in alias_history(project, "model", "shop", "latest")] == ["shop:sft@v1", "shop:sft@v2"]
    assert alias_target(project, "model", "shop", "staging") is None

    written = prepare(project)[0]
    assert [d.id for d in datasets(project)] == [written["id"]] and datasets(project, "other") == []
    assert datasets(project)[0] == dataset(project, "tickets")  # the store's manifest is the one on disk
    assert [a.target for a in aliases(project, "dataset", alias="latest")] == [written["id"]]
    counts = summary(project)
    assert counts["model_versions"][0] == 2 and counts["dataset_versions"] == (1, written["created_at"])
    assert counts["aliases"][0] == len(aliases(project)) and counts["reports"] == (0, None)


def test_the_grammar_and_the_retired_alias_spelling(project, capsys):
    assert names.parse("shop:sft@v3") == names.Name("shop", "sft", "v3")
    assert names.parse("tickets@latest") == names.Name("tickets", None, "latest")
    assert str(names.parse("shop:zero_shot")) == "shop:zero_shot"
    for bad in ("", "shop@", ":sft", "a@b@c"):
        with pytest.raises(TailorError):
            names.parse(bad)
    row = _register(project)
    project.store.set_alias("model", "shop", "production", row["id"])
    names._warned.clear()
    assert model(project, "shop:production").id == row["id"]
    assert model(project, "shop:production").id == row["id"]  # said once, not on every call
    err = capsys.readouterr().err
    assert err.count("old alias spelling") == 1 and "'shop@production'" in err
    # a configured rung's name is not an alias, even when an alias of that name exists
    project.store.set_alias("model", "shop", "zero_shot", row["id"])
    assert names.model_alias(project, "shop:zero_shot") is None


def test_the_server_and_the_rung_builder_accept_both_spellings(project, capsys):
    from tailorlm.serve.routing import Router

    row = _register(project)
    project.store.set_alias("model", "shop", "production", row["id"])
    router = Router(project, pool=None)
    names._warned.clear()
    assert router.resolve("shop@production") == router.resolve("shop:production") == row["id"]
    assert "old alias spelling" in capsys.readouterr().err
    assert router.resolve("shop:zero_shot") == "shop:zero_shot"  # a rung stays a rung


def _eval(project, name, answers):
    from tailorlm.eval.runner import evaluate
    from tailorlm.eval.suite import load_suite
    from tailorlm.rungs.base import PromptRung

    gen = ScriptedGenerator(answers)
    return evaluate(project, PromptRung(gen, system="Route it.", name=name), load_suite(project, "golden.jsonl"),
                    ["accuracy"], subject=f"shop:{name}")


def _ladder(project, day: str, rung: str) -> dict:
    ladder = {"id": f"ladder-{day}-abcdef", "kind": "ladder", "suite": {"name": "golden", "version": "v", "n": 9},
              "primary": "accuracy", "metrics": ["accuracy"], "margin": 0.02,
              "rungs": [{"name": rung, "quality": {"mean": 0.5, "low": 0.2, "high": 0.8, "n": 9}}],
              "comparisons": [], "recommendation": {"rung": rung, "reason": "only rung"}, "created_at": f"{day}T00:00:00"}
    folder = project.artifacts("reports") / ladder["id"]
    folder.mkdir(parents=True)
    return reports.save_ladder(project, ladder, folder).to_dict()


def test_every_reader_finds_the_same_newest_report(project, cli):
    from tailorlm.advise.facts import latest_ladder
    from tailorlm.serve.check import find_report
    from tailorlm.ui.views import newest_ladder

    first = _eval(project, "zero_shot", ["billing"] * 9)
    second = _eval(project, "few_shot", ["login"] * 9)
    # The older report's file is touched last: newest is by created_at, not by mtime.
    os.utime(project.root / first["path"], None)
    listed = json.loads(cli("reports", "list", "--json", "-p", str(project.root)).stdout)["reports"]
    evals = [r for r in listed if r["subject"] != "ladder"]
    assert evals[-1]["id"] == second["id"] == find_report(project)["id"] == reports.latest(project, "eval").id
    assert isinstance(reports.find(project, second["id"][:8]), Report)

    older = _ladder(project, "2026-12-01", "zero_shot")
    newer = _ladder(project, "2026-12-05", "few_shot")
    os.utime(project.root / older["path"], None)
    listed = json.loads(cli("reports", "list", "--json", "-p", str(project.root)).stdout)["reports"]
    ladders = [r for r in listed if r["subject"] == "ladder"]
    assert ladders[-1]["id"] == newer["id"] == latest_ladder(project)["id"] == newest_ladder(project)["id"]
    shown = json.loads(cli("reports", "show", "ladder-2026-12-05", "--json", "-p", str(project.root)).stdout)
    assert shown["id"] == newer["id"] and isinstance(reports.find(project, newer["id"]), Ladder)
    assert Ladder.model_validate(shown).recommendation["rung"] == "few_shot"


def test_a_report_round_trips_through_its_type(project):
    report = _eval(project, "zero_shot", ["billing"] * 9)
    typed = reports.find(project, report["id"])
    assert isinstance(typed, Report) and typed.metrics["accuracy"]["n"] == 9 and len(typed.examples) == 9
    assert Report.model_validate(typed.to_dict()) == typed
    assert typed.to_dict()["latency"] == report["latency"]  # keys the type does not name are kept
    with pytest.raises(TailorError, match="no eval reports match 'rep-zzz'"):
        reports.find(project, "rep-zzz", "eval")


def test_a_report_folder_copied_in_without_its_row_is_still_found(project):
    report = _eval(project, "zero_shot", ["billing"] * 9)
    with project.store.engine.begin() as conn:  # as if the folder came from another machine, without the database
        conn.exec_driver_sql("DELETE FROM reports")
    assert [e.id for e in reports.entries(project)] == [report["id"]]
    assert reports.latest(project, "eval").id == report["id"] == reports.find(project, report["id"][:7]).id
