"""`tailor data synthesize`: tagging, verification, RAFT prompts, the synthetic cap (here and in the
mix step), and the warning for training a model on its own outputs."""

import json
import re

import pytest

from tailorlm.data.record import Record
from tailorlm.data.steps.mix import Mix, cap_allowed
from tailorlm.synthesize import synthesize
from tailorlm.train.data import own_outputs_warning
from tailorlm.data.versions import load_records, resolve, write_version
from tailorlm.project import Project
from tailorlm.rungs.rag import GUARD
from tests.helpers import ScriptedGenerator, extend_config, run_step

GOLDEN = "How many days does Keelbox keep deleted files before they are removed for good from the trash"


def _chat(i, split="train", user=None, answer=None):
    return Record(f"t{i}", "chat", {"messages": [
        {"role": "user", "content": user or f"How do I reset the password of account number {i} in the console?"},
        {"role": "assistant", "content": answer or f"Open Settings, choose Security and reset it for account {i}."}]},
        {"split": split, "source": "tickets"})


@pytest.fixture
def project(cli, tmp_path):
    cli("init", "acme", "--description", "Answer Keelbox support questions.")
    root = tmp_path / "acme"
    (root / "docs").mkdir()
    for name, body in [("plans", "# Plans\n\nThe Team plan costs 12 dollars per seat per month, billed yearly.\n"),
                       ("trash", "# Trash\n\nDeleted files stay in the trash for 30 days, then they are purged.\n"),
                       ("sso", "# SSO\n\nSingle sign-on works with SAML 2.0 providers such as Okta and Entra ID.\n")]:
        (root / "docs" / f"{name}.md").write_text(body)
    (root / "golden.jsonl").write_text(json.dumps({"input": [{"role": "user", "content": GOLDEN}], "reference": "30 days"}) + "\n")
    cfg = (root / "tailor.yaml").read_text()
    cfg = cfg.replace("sources: []", "sources:\n  - {name: docs, path: docs/, kind: text}")
    cfg = cfg.replace("  suite: golden\n", "  suite: golden\n  path: golden.jsonl\n")
    (root / "tailor.yaml").write_text(cfg)
    proj = Project.load(root)
    records = {"train": [_chat(i) for i in range(10)], "test": [_chat(i, "test") for i in range(50, 53)]}
    write_version(proj, "tickets", records, {"kind": "chat", "license": "internal", "parents": [], "steps": [],
                                             "sources": [{"name": "tickets", "path": "t.jsonl", "files": []}],
                                             "accounting": {}, "recipe": {"v": 1}}, [])
    return proj


def _example(i):
    return f"USER: My invoice {i} shows the wrong company name, how can I change it?\nASSISTANT: Edit the billing profile {i}."


def _quarantine(project, result):
    path = project.root / result["path"] / "quarantine.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_self_instruct_records_are_tagged_verified_and_capped(project):
    replies = [_example(i) for i in range(8)] + [
        "Sure! Here is an example without the format.",                      # unparseable
        "USER: " + _chat(3).content["messages"][0]["content"] + "\nASSISTANT: " + _chat(3).content["messages"][1]["content"],
        "USER: Hi\nASSISTANT: ok",                                           # too short
        f"USER: {GOLDEN}\nASSISTANT: Thirty days in the trash.",             # in the golden suite
    ]
    teacher = ScriptedGenerator(replies)
    result = synthesize(project, seeds="tickets", n=len(replies), teacher=teacher)
    # 10 real training records allow floor(10 · 0.3 / 0.7) = 4 synthetic ones
    assert result["kept"] == 4 == cap_allowed(10, 0.3)
    assert result["dropped"] == {"synthesize: unparseable": 1, "dedup_real: duplicate_of_real": 1,
                                 "check_format: too_short": 1, "decontaminate: overlaps_eval": 1,
                                 "synthetic_cap: synthetic_cap": 4}
    manifest = resolve(project, result["id"])
    assert manifest["accounting"]["holds"] and manifest["parents"] == [resolve(project, "tickets")["id"]]
    assert manifest["synthetic"]["share"] <= 0.3 and manifest["synthetic"]["teachers"] == ["smollm2-135m-instruct"]
    train = load_records(project, manifest, "train")
    synthetic = [r for r in train if r.meta.get("synthetic")]
    assert len(train) == 14 and len(synthetic) == 4
    for r in synthetic:
        assert r.meta["teacher"] == "smollm2-135m-instruct" and r.meta["teacher_weak"] is True
        assert r.meta["method"] == "self_instruct" and "Here are real examples" in r.meta["prompt"]
        assert r.meta["tags"] == ["synthetic"] and len(r.meta["seed_ids"]) == 3
    # synthetic data only ever joins the training split; the test split stays the real one
    assert [r.id for r in load_records(project, manifest, "test")] == ["t50", "t51", "t52"]
    reasons = {q["reason"] for q in _quarantine(project, result)}
    assert {"unparseable", "duplicate_of_real", "too_short", "overlaps_eval", "synthetic_cap"} <= reasons
    # the weak embedded teacher, which is also the generator, is flagged twice
    assert any("embedded smollm2-135m-instruct" in w for w in result["warnings"])
    assert any("its own outputs" in w for w in result["warnings"])
    # the teacher only ever saw training examples as seeds
    shown = " ".join(m["content"] for call in teacher.calls for m in call)
    assert "account number 50" not in shown and "account number 3 " in shown


def test_raft_questions_carry_the_source_among_distractors(project):
    extend_config(project.root, {"synthesize": {"oracle_share": 1.0, "distractors": 2},
                                 "models": {"generator": {"model": "smollm2-135m-instruct"},
                                            "teacher": {"backend": "openai", "model": "big-teacher",
                                                        "base_url": "http://127.0.0.1:9/v1"}}})
    project = Project.load(project.root)
    replies = [f"QUESTION: What does fact number {i} in this passage say exactly?\nANSWER: It says what the passage says."
               for i in range(3)]
    result = synthesize(project, docs=[], n=3, teacher=ScriptedGenerator(replies), mix_with="tickets", max_share=0.5)
    assert result["kept"] == 3 and result["teacher"] == {"model": "big-teacher", "backend": "openai", "weak": False}
    assert not any("own outputs" in w for w in result["warnings"])
    records = [r for r in load_records(project, resolve(project, result["id"]), "train") if r.meta.get("synthetic")]
    for r in records:
        system, user, answer = r.content["messages"]
        assert GUARD in system["content"]
        assert user["content"].startswith("Sources:") and "\n\nQuestion: What does fact number" in user["content"]
        blocks = re.findall(r"\[(\d+)\] (\S+).*?\n<<<\n", user["content"])
        assert len(blocks) == 3  # the source and two distractors
        oracle_doc = r.meta["oracle"].split("#")[0]
        assert r.meta["oracle_in_context"] and r.meta["method"] == "raft"
        assert [path for _, path in blocks].count(oracle_doc) == 1  # distractors come from other documents
        cited = answer["content"].rsplit("[", 1)[1].rstrip("]")
        assert dict((path, n) for n, path in blocks)[oracle_doc] == cited  # the answer cites the source's number


def test_raft_without_the_oracle_cites_nothing(project):
    cfg = project.root / "tailor.yaml"
    cfg.write_text(cfg.read_text() + "synthesize:\n  oracle_share: 0.0\n")
    project = Project.load(project.root)
    replies = [f"QUESTION: Which plan or feature does passage number {i} describe?\nANSWER: The one it names." for i in range(2)]
    result = synthesize(project, docs=["docs"], n=2, teacher=ScriptedGenerator(replies), mix=False)
    assert result["kept"] == 2 and "synthetic only" in " ".join(result["warnings"])
    for r in load_records(project, resolve(project, result["id"])):
        assert not r.meta["oracle_in_context"] and "[" not in r.content["messages"][-1]["content"]


def test_judge_score_and_label_checks(project):
    cfg = project.root / "tailor.yaml"
    cfg.write_text(cfg.read_text().replace("type: qa", "type: classification\n  labels: [billing, login]"))
    project = Project.load(project.root)
    replies = ["USER: I was charged twice this month for one seat\nASSISTANT: billing",
               "USER: The login page keeps rejecting my password today\nASSISTANT: login",
               "USER: Where is the nearest office of the company\nASSISTANT: location"]
    judge = ScriptedGenerator(["Score: 5. Correct label.", "Score: 2"])
    result = synthesize(project, seeds="tickets", n=3, teacher=ScriptedGenerator(replies), judge=judge,
                        min_judge_score=4, max_share=0.5)
    assert result["kept"] == 1
    assert result["dropped"] == {"check_format: not_a_label": 1, "judge_score: low_judge_score": 1}
    kept = [r for r in load_records(project, resolve(project, result["id"]), "train") if r.meta.get("synthetic")]
    assert kept[0].content["messages"][-1]["content"] == "billing" and kept[0].meta["judge_score"] == 5.0


def test_nothing_to_synthesize_from_is_an_error(project):
    from tailorlm.errors import TailorError

    with pytest.raises(TailorError, match="nothing to synthesize"):
        synthesize(project)


def test_mix_step_caps_the_synthetic_share():
    real = [Record(f"r{i}", "chat", {"messages": []}, {"source": "a"}) for i in range(7)]
    synth = [Record(f"s{i}", "chat", {"messages": []}, {"source": "b", "synthetic": True}) for i in range(7)]
    kept, dropped = run_step(Mix(ratios={"a": 1, "b": 1}), real + synth)
    assert sum(k.startswith("s") for k in kept) == 3  # 3 / (7 + 3) = 30%
    assert set(dropped.values()) == {"synthetic_cap"}
    kept, _ = run_step(Mix(ratios={"a": 1, "b": 1}, synthetic_max_share=0.5), real + synth)
    assert sum(k.startswith("s") for k in kept) == 7


def test_prepare_enforces_the_configured_cap_on_sources_tagged_synthetic(cli, tmp_path):
    cli("init", "mixp")
    root = tmp_path / "mixp"
    for name, n in (("real", 8), ("gen", 8)):
        rows = [{"id": f"{name}{i}", "messages": [{"role": "user", "content": f"{name} question {i}"},
                                                   {"role": "assistant", "content": f"{name} answer {i}"}]} for i in range(n)]
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = (root / "tailor.yaml").read_text().replace("sources: []", "sources:\n  - {name: real, path: real.jsonl}\n"
                                                     "  - {name: gen, path: gen.jsonl, tags: [synthetic]}")
    (root / "tailor.yaml").write_text(cfg + "synthesize:\n  max_share: 0.2\ndata:\n  steps:\n"
                                      "    - mix: {ratios: {real: 1, gen: 1}}\n")
    out = cli("data", "prepare", "real", "gen", "--name", "mixed", "-p", root, "--json")
    assert out.exit_code == 0, out.output
    project = Project.load(root)
    records = load_records(project, resolve(project, "mixed"))
    assert sum(r.meta["source"] == "gen" for r in records) == 2  # 2 / (8 + 2) = 20%
    quarantine = json.loads(cli("data", "quarantine", "mixed", "-p", root, "--json").output)
    assert quarantine["by_reason"] == {"mix: synthetic_cap": 6}


def test_own_outputs_warning():
    synth = Record("s", "chat", {}, {"synthetic": True, "teacher": "base-m"})
    real = Record("r", "chat", {}, {})
    assert "1 of 2 training records were written by base-m" in own_outputs_warning([synth, real], {"base-m"})
    assert own_outputs_warning([synth, real], {"other"}) is None


def test_training_on_own_outputs_warns(project, tiny_model_dir, tiny_generator):
    from tailorlm.train.config import TrainConfig
    from tailorlm.train.runs import train

    cfg = project.root / "tailor.yaml"
    cfg.write_text(cfg.read_text().replace("model: smollm2-135m-instruct", f"model: {tiny_model_dir}"))
    project = Project.load(project.root)
    replies = [_example(i) for i in range(3)]
    result = synthesize(project, seeds="tickets", n=3, teacher=ScriptedGenerator(replies))
    assert any("its own outputs" in w for w in result["warnings"])
    messages = []
    train(project, TrainConfig(dataset=result["id"], max_steps=1, batch_size=2, eval_steps=1), on_message=messages.append)
    assert any("were written by" in m and str(tiny_model_dir) in m for m in messages)


def _short_replies(project) -> Project:
    cfg = project.root / "tailor.yaml"
    cfg.write_text(cfg.read_text() + "synthesize:\n  max_tokens: 16\n")  # a random model never stops by itself
    return Project.load(project.root)


def test_tiny_real_model_as_teacher_quarantines_what_it_cannot_format(project, tiny_generator):
    project = _short_replies(project)
    result = synthesize(project, seeds="tickets", n=2, teacher=tiny_generator)
    assert result["generated"] == 2
    entries = [q for q in _quarantine(project, result) if q["step"] == "synthesize"]
    assert len(entries) + result["kept"] + sum(v for k, v in result["dropped"].items() if not k.startswith("synthesize")) == 2
    for q in entries:
        assert q["reason"] == "unparseable" and "Here are real examples" in q["meta"]["prompt"]


def test_cli_synthesize_with_a_configured_teacher(project, cli, tiny_model_dir):
    project = _short_replies(project)
    extend_config(project.root, {"models": {"teacher": {"model": str(tiny_model_dir)}}})
    out = cli("data", "synthesize", "--seeds", "tickets", "--n", "2", "-p", project.root, "--json")
    result = json.loads(out.output.splitlines()[0])
    assert result["teacher"] == {"model": str(tiny_model_dir), "backend": "local", "weak": False}
    assert result["generated"] == 2 and out.exit_code == (0 if result["kept"] else 1)
