"""`tailor serve --check`: replaying an eval report's golden prompts through the server at temperature 0."""

import json

import pytest

from tests.serve_fixtures import *  # noqa: F403
from tests.serve_fixtures import write_project

QUESTIONS = ["How do I reset my password?", "What does the Team plan cost?", "Can I export my data?",
             "Is there an on-premise version? " * 3]


@pytest.fixture
def reported(tmp_path, tiny_generator, tiny_model_dir):
    """A project on the tiny model's folder, and an eval-style report of its zero_shot rung's answers."""
    from tailorlm.models.base import GenParams
    from tailorlm.models.pool import ModelPool
    from tailorlm.serve.routing import Router

    project = write_project(tmp_path / "acme", generator=tiny_model_dir)
    rung = Router(project, ModelPool(project, generator=tiny_generator)).rung("acme:zero_shot")
    params = GenParams(temperature=0.0, max_tokens=16)
    examples = []
    for i, q in enumerate(QUESTIONS):
        messages = [{"role": "user", "content": q}]
        examples.append({"id": f"ex{i}", "input": messages, "prediction": rung.answer(messages, params).text,
                         "error": None, "reference": None})
    report = {"id": "rep-parity", "kind": "eval", "subject": "acme:zero_shot", "rung": rung.describe(),
              "params": vars(params), "examples": examples}
    path = project.artifacts("reports") / "rep-parity" / "report.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(report))
    return project, path, report


def test_served_answers_match_the_report_exactly(start, reported):
    from tailorlm.serve.check import check_parity

    project, path, report = reported
    url, _ = start(project=project)
    result = check_parity(project, None, url)  # the newest report
    assert (result["n"], result["matched"], result["mismatched"], result["report"]) == (4, 4, 0, "rep-parity")
    assert check_parity(project, "rep-parity", url, concurrency=4)["matched"] == 4  # batched, too

    report["examples"][2]["prediction"] = "something eval never said"
    path.write_text(json.dumps(report))
    result = check_parity(project, str(path), url)
    assert result["mismatched"] == 1
    assert result["mismatches"][0]["id"] == "ex2" and result["mismatches"][0]["expected"] == "something eval never said"


def test_the_cli_check_starts_a_server_and_exits_1_on_a_mismatch(reported, cli):
    project, path, report = reported
    ok = cli("serve", "--check", "--report", "rep-parity", "-p", project.root, "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["matched"] == 4
    report["examples"][0]["prediction"] += "!"
    path.write_text(json.dumps(report))
    bad = cli("serve", "--check", "-p", project.root)
    assert bad.exit_code == 1
    assert "3/4 outputs match report rep-parity" in bad.output and "ex0" in bad.output
    assert cli("serve", "--check", "--report", "rep-nothing", "-p", project.root).exit_code == 2
