"""Exports of a model version: merged weights, a vLLM-ready PEFT adapter, and GGUF."""

import json
import sys

import pytest
import torch

from tailorlm.errors import TailorError
from tailorlm.train.export import CONVERTER_ENV, export_adapter, export_gguf, export_merged, find_gguf_converter

IDS = torch.tensor([[1, 28, 905, 4711, 13, 2048, 7, 2]])
TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
BASE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"


def load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def logits(model):
    with torch.no_grad():
        return model(IDS).logits


def make_adapter(base_dir, tokenizer, out, seed=0, **lora):
    """A LoRA adapter on the tiny model whose B weights are non-zero, so it changes the logits,
    saved with a tokenizer whose chat template differs from the base's (as training would)."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load(base_dir), LoraConfig(**{"r": 4, "target_modules": ["q_proj", "v_proj"], **lora}))
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=gen) * 0.5
    model.save_pretrained(out)
    tokenizer.chat_template = TEMPLATE
    try:
        tokenizer.save_pretrained(out)
    finally:
        tokenizer.chat_template = load_template(base_dir)
    return out


def load_template(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder).chat_template


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tokenizer, tmp_path_factory):
    return make_adapter(tiny_model_dir, tokenizer, tmp_path_factory.mktemp("adapter"))


def with_adapter(base_dir, adapter):
    from peft import PeftModel

    return PeftModel.from_pretrained(load(base_dir), str(adapter)).eval()


def test_merged_matches_base_plus_adapter(tiny_model_dir, adapter_dir, tmp_path):
    result = export_merged(str(tiny_model_dir), adapter_dir, tmp_path / "merged")
    out = tmp_path / "merged"
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "tailor_export.json"} <= set(result["files"])
    assert result["bytes"] == sum((out / f).stat().st_size for f in result["files"])
    expected = logits(with_adapter(tiny_model_dir, adapter_dir))
    assert not torch.allclose(expected, logits(load(tiny_model_dir)), atol=1e-3), "the adapter changes nothing"
    assert torch.allclose(logits(load(out)), expected, atol=1e-4)
    # Train/serve parity: the tokenizer (chat template, EOS) is the one saved with the adapter.
    assert load_template(out) == TEMPLATE
    assert json.loads((out / "tailor_export.json").read_text())["adapter"] == str(adapter_dir)


def test_merged_without_adapter_sharded_and_half(tiny_model_dir, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "full"
    result = export_merged(str(tiny_model_dir), None, out, dtype="float16", max_shard_size="2MB")
    shards = [f for f in result["files"] if f.endswith(".safetensors")]
    assert len(shards) > 1 and "model.safetensors.index.json" in result["files"]
    with safe_open(str(out / shards[0]), framework="pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    assert torch.allclose(logits(load(out)), logits(load(tiny_model_dir)), atol=1e-2)
    assert load_template(out) == load_template(tiny_model_dir)
    with pytest.raises(TailorError, match="not empty"):
        export_merged(str(tiny_model_dir), None, out)
    with pytest.raises(TailorError, match="dtype"):
        export_merged(str(tiny_model_dir), None, tmp_path / "x", dtype="int3")


def test_adapter_export_reloads_with_same_logits(tiny_model_dir, adapter_dir, tmp_path):
    out = tmp_path / "support-v1"
    result = export_adapter(adapter_dir, out, BASE_NAME)
    assert result["warnings"] == []
    assert (result["r"], result["max_rank"], result["target_modules"]) == (4, 4, ["q_proj", "v_proj"])
    assert result["vllm_lora_module"] == f"support-v1={out}"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE_NAME and config["r"] == 4
    assert {"adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(result["files"])
    assert load_template(out) == TEMPLATE
    assert torch.allclose(logits(with_adapter(tiny_model_dir, out)), logits(with_adapter(tiny_model_dir, adapter_dir)),
                          atol=1e-4)


def test_adapter_export_warns_about_what_vllm_cannot_serve(tiny_model_dir, tokenizer, tmp_path):
    src = make_adapter(tiny_model_dir, tokenizer, tmp_path / "wide", r=32, target_modules=["q_proj", "lm_head"])
    warnings = export_adapter(src, tmp_path / "out", BASE_NAME)["warnings"]
    assert any("lm_head" in w for w in warnings)
    assert any("--max-lora-rank 32" in w for w in warnings)


def test_adapter_export_rejects_inconsistent_or_missing_adapters(adapter_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(adapter_dir, broken)
    config = json.loads((broken / "adapter_config.json").read_text())
    (broken / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    with pytest.raises(TailorError, match="r=8"):
        export_adapter(broken, tmp_path / "out", BASE_NAME)
    with pytest.raises(TailorError, match="adapter_config.json"):
        export_adapter(tmp_path, tmp_path / "out2", BASE_NAME)


# A stand-in for llama.cpp's converter: it takes the same arguments and writes a small but real
# GGUF file that records the arguments it was given.
FAKE_CONVERTER = '''
import json, sys
import gguf, numpy as np
args = sys.argv[1:]
w = gguf.GGUFWriter(args[args.index("--outfile") + 1], "llama")
w.add_string("fake.argv", json.dumps(args))
w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
'''


@pytest.fixture
def no_converter(monkeypatch, tmp_path):
    monkeypatch.delenv(CONVERTER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


def test_gguf_without_converter_says_what_is_missing(tiny_model_dir, tmp_path, no_converter):
    assert find_gguf_converter() is None
    with pytest.raises(TailorError) as e:
        export_gguf(tiny_model_dir, tmp_path / "m.gguf")
    for words in ("convert_hf_to_gguf.py", CONVERTER_ENV, "llama-cpp-python", f"{tiny_model_dir} --outfile"):
        assert words in str(e.value)
    with pytest.raises(TailorError, match="export_merged"):
        export_gguf(tmp_path, tmp_path / "m.gguf")  # not a model folder


def test_gguf_through_a_converter_named_by_env(tiny_model_dir, tmp_path, no_converter, monkeypatch):
    import gguf

    script = tmp_path / "convert_hf_to_gguf.py"
    script.write_text(FAKE_CONVERTER)
    monkeypatch.setenv(CONVERTER_ENV, str(script))
    assert find_gguf_converter() == [sys.executable, str(script)]
    out = tmp_path / "gguf" / "model-q8.gguf"
    result = export_gguf(tiny_model_dir, out, outtype="q8_0")
    assert (result["architecture"], result["tensors"], result["bytes"]) == ("llama", 1, out.stat().st_size)
    argv = json.loads(gguf.GGUFReader(str(out)).fields["fake.argv"].contents())
    assert argv == [str(tiny_model_dir), "--outfile", str(out), "--outtype", "q8_0"]


@pytest.mark.parametrize("body, words", [
    ("import sys\nsys.exit('unsupported architecture: Tiny')", "unsupported architecture: Tiny"),
    ("import sys\nopen(sys.argv[sys.argv.index('--outfile') + 1], 'w').write('nope')", "not a readable GGUF"),
])
def test_gguf_converter_failures_are_reported(tiny_model_dir, tmp_path, no_converter, monkeypatch, body, words):
    script = tmp_path / "conv.py"
    script.write_text(body)
    monkeypatch.setenv(CONVERTER_ENV, str(script))
    with pytest.raises(TailorError, match=words):
        export_gguf(tiny_model_dir, tmp_path / "m.gguf")
    monkeypatch.setenv(CONVERTER_ENV, str(tmp_path / "missing.py"))
    with pytest.raises(TailorError, match="does not exist"):
        export_gguf(tiny_model_dir, tmp_path / "m.gguf")


def test_gguf_with_real_llama_cpp_converter(tiny_model_dir, adapter_dir, tmp_path):
    """Runs only where llama.cpp's converter is set up (TAILOR_GGUF_CONVERTER or PATH)."""
    if find_gguf_converter() is None:
        pytest.skip(f"llama.cpp's convert_hf_to_gguf.py is not available; set {CONVERTER_ENV} to run this")
    from transformers import AutoModelForCausalLM

    merged = tmp_path / "merged"
    export_merged(str(tiny_model_dir), adapter_dir, merged)
    out = tmp_path / "model-f32.gguf"
    result = export_gguf(merged, out, outtype="f32")
    assert result["architecture"] == "llama" and result["tensors"] > 0
    import gguf

    assert gguf.GGUFReader(str(out)).fields["tokenizer.chat_template"].contents() == TEMPLATE  # parity survives
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=out.name, dtype=torch.float32).eval()
    assert torch.allclose(logits(back), logits(load(merged)), atol=1e-4)
