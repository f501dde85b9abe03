"""The public library API: what a Python user does through `import tailorlm`, on a tiny model."""

import subprocess
import sys

import tailorlm
from tests.helpers import write_shop

LABELS = ["billing", "login", "bug"]


def _project_folder(root, tiny_model_dir):
    rows = [{"id": f"t{i}", "messages": [{"role": "user", "content": f"ticket {i}: my {LABELS[i % 3]} problem"},
                                         {"role": "assistant", "content": LABELS[i % 3]}]} for i in range(30)]
    golden = [{"id": f"g{i}", "input": [{"role": "user", "content": f"question {i} on {LABELS[i % 3]}"}],
               "reference": LABELS[i % 3], "labels": [LABELS[i % 3]]} for i in range(6)]
    return write_shop(root, tiny_model_dir, rows, golden, "  - {kind: zero_shot}\n  - {kind: few_shot, k: 2}\n")


def test_prepare_evaluate_ladder_through_import_tailorlm(tmp_path, tiny_model_dir):
    root = _project_folder(tmp_path / "shop", tiny_model_dir)
    manifests = tailorlm.prepare(root)
    assert [m["id"].split("@")[0] for m in manifests] == ["tickets"]
    assert tailorlm.prepare_summary(manifests)["invalid"] == {manifests[0]["id"]: 0}

    seen = []
    report = tailorlm.evaluate(root, "zero_shot", on_progress=lambda task, done, total, **info: seen.append((task, done, total)))
    assert report["subject"] == "shop:zero_shot" and report["metrics"]["accuracy"]["n"] == 6
    assert seen[-1] == ("shop:zero_shot", 6, 6)  # the one progress shape
    assert tailorlm.report(root, report["id"])["id"] == report["id"]

    ladder = tailorlm.ladder(root, delta=0.2)
    assert [r["name"] for r in ladder["rungs"]] == ["zero_shot", "few_shot"]
    assert ladder["rungs"][0]["report"] == report["id"]  # the same question, answered once
    assert ladder["recommendation"]["rung"] in ("zero_shot", "few_shot") and ladder["power"]["delta"] == 0.2
    typed = tailorlm.report(root, ladder["id"])
    assert tailorlm.Ladder.model_validate(typed).recommendation == ladder["recommendation"]
    assert [r["id"] for r in tailorlm.reports(root)][-1] == ladder["id"]


def test_the_stage_packages_are_callable_and_keep_their_modules():
    import tailorlm.train.config  # importing a submodule must not hide the function
    assert callable(tailorlm.train) and callable(tailorlm.ladder) and callable(tailorlm.serve)
    assert tailorlm.train.config.TrainConfig.model_fields["dataset"].description
    assert tailorlm.DatasetVersion.__name__ == "DatasetVersion"


def test_import_tailorlm_loads_no_model_library():
    code = ("import sys, tailorlm; tailorlm.evaluate; tailorlm.DatasetVersion; "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
