"""Tests with the real embedded SmolLM2-135M-Instruct. Marked slow; CI runs them."""

import json

import pytest

from tailorlm.models.base import GenParams

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


def test_quickstart_runs_end_to_end(cli, tmp_path):
    result = cli("quickstart", "demo", "--questions", "2", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["n"] == 2 and out["rung"] == "zero_shot"
    assert all(a["answer"] and a["reference"] for a in out["answers"])
    saved = (tmp_path / "demo" / ".tailor" / "reports" / "quickstart.jsonl").read_text().splitlines()
    assert [json.loads(line)["answer"] for line in saved] == [a["answer"] for a in out["answers"]]
    assert (tmp_path / "demo" / ".tailor" / "tailor.db").exists()
