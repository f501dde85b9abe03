"""Tests with the real embedded SmolLM2-135M-Instruct. Marked slow; CI runs them."""

import json

import pytest

from tailorlm.models.base import GenParams
from tailorlm.project import Project

pytestmark = pytest.mark.slow

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def smol(smol_dir):
    from tailorlm.models.local import LocalGenerator

    return LocalGenerator.load("smollm2-135m-instruct")


def test_the_embedded_model_knows_the_capital_of_france(smol):
    answer = smol.generate(FRANCE, GenParams(max_tokens=32))
    assert "Paris" in answer.text
    assert answer.finish_reason == "stop"  # it ended at <|im_end|>, not at max_tokens


def test_streaming_matches_non_streaming_on_the_real_model(smol):
    messages = [{"role": "user", "content": "Give me two tips for writing clear emails."}]
    params = GenParams(max_tokens=48)
    full = smol.generate(messages, params).text
    assert "".join(c.text for c in smol.stream(messages, params)) == full
    batched = smol.generate_batch([FRANCE, messages], params, batch_size=2)
    assert batched[1].text == full


def test_quickstart_runs_the_journey_on_the_example(cli, tmp_path):
    # The cheap rungs only: the full ladder (with LoRA training) runs in .ci/run as the README's main job.
    result = cli("quickstart", "demo", "--rungs", "zero_shot,few_shot_static,rag", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["name"] for r in out["rungs"]] == ["zero_shot", "few_shot_static", "rag"]
    assert all(r["quality"]["n"] == 64 and r["errors"] == 0 for r in out["rungs"])
    assert {d.split("@")[0] for d in out["datasets"]} == {"docs", "tickets"}
    assert out["recommendation"]["rung"] in {"zero_shot", "few_shot_static", "rag"}
    root = tmp_path / "demo"
    assert (root / out["chart_png"]).exists() and (root / out["chart_html"]).exists()
    # Classification rungs are held to the labels (label_mode: score): every answer is a real label, and
    # zero-shot, which scored 0 as free text, is above chance (1 in 8 labels) with its whole interval.
    labels = set(Project.load(root).config.task.labels)
    for r in out["rungs"]:
        examples = json.loads((root / ".tailor" / "reports" / r["report"] / "report.json").read_text())["examples"]
        assert {e["label"] for e in examples} <= labels and len(examples) == 64
    assert out["rungs"][0]["quality"]["low"] > 1 / len(labels)


def test_lora_fine_tunes_the_embedded_model_for_a_few_steps(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tailorlm.data.pipeline import prepare
    from tailorlm.project import Project
    from tailorlm.quickstart import create_example
    from tailorlm.train.config import TrainConfig
    from tailorlm.train.runs import train

    project = Project.load(create_example(tmp_path / "keelbox"))
    prepare(project, ["tickets"])
    result = train(project, TrainConfig(dataset="tickets", max_steps=3, batch_size=4, eval_steps=100,
                                        early_stopping_patience=None, warmup_ratio=0.0, learning_rate=1e-3))
    assert result["metrics"]["steps"] == 3 and result["metrics"]["train_loss_last"] < result["metrics"]["train_loss_first"]
    from tailorlm.models.embedded import ensure

    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(ensure("smollm2-135m-instruct")),
                                      f"{result['run_dir']}/model")
    assert all(p.abs().sum() > 0 for n, p in tuned.named_parameters() if "lora_B" in n)
