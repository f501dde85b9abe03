"""Quantised GGUF export (`tailor export --format gguf --quant q8_0|q4_k_m`).

The first test runs llama.cpp's own converter, llama-quantize and llama-completion when they are there
(TAILOR_GGUF_CONVERTER, TAILOR_LLAMA_QUANTIZE, or PATH); Debian 12 packages no llama.cpp, so on a bare
machine it is skipped, saying so. The others drive export_gguf through scripts standing in for the tools.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tailorlm.errors import TailorError
from tailorlm.train.export import CONVERTER_ENV, QUANTIZE_ENV, export_gguf, find_gguf_converter, find_llama_quantize


def _llama_tools():
    converter, quantizer = find_gguf_converter(), find_llama_quantize()
    completion = shutil.which("llama-completion") or (quantizer and str(Path(quantizer).with_name("llama-completion")))
    if not (converter and quantizer and completion and Path(completion).is_file()):
        pytest.skip("llama.cpp's tools are not installed (Debian 12 has no llama.cpp package): set "
                    f"{CONVERTER_ENV} to convert_hf_to_gguf.py and {QUANTIZE_ENV} to a llama-quantize build with "
                    "llama-completion beside it")
    return completion


@pytest.fixture(scope="module")
def k_quant_model_dir(tokenizer, tmp_path_factory):
    """A 2-layer Llama whose rows are 256 wide, the block size k-quants need (narrower rows fall back)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("k256")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_q8_0_and_q4_k_m_files_that_llama_cpp_loads(k_quant_model_dir, tmp_path):
    completion = _llama_tools()
    sizes = {}
    for quant, kind in (("q8_0", "Q8_0"), ("q4_k_m", "Q4_K")):
        out = tmp_path / f"model-{quant}.gguf"
        result = export_gguf(k_quant_model_dir, out, quant=quant)
        assert result["outtype"] == quant and result["tensor_types"].get(kind, 0) >= 4, result["tensor_types"]
        assert not list(tmp_path.glob("*.tmp"))  # the f16 intermediate is gone
        sizes[quant] = result["bytes"]
        run = subprocess.run([completion, "-m", str(out), "-p", "Hello", "-n", "4", "-no-cnv", "--temp", "0", "-t", "1"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "load the model" in run.stderr and "common_perf_print" in run.stderr  # loaded, then generated
        assert run.stdout.lstrip().startswith("Hello"), run.stdout
    assert sizes["q4_k_m"] < sizes["q8_0"]


FAKE_CONVERTER = """import json, sys
args = sys.argv[1:]
import gguf, numpy as np
w = gguf.GGUFWriter(args[args.index("--outfile") + 1], "llama")
w.add_string("fake.argv", json.dumps(args))
w.add_tensor("t", np.zeros(4, dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
"""
# Stands in for llama-quantize: copies its input to its output and records its arguments beside them.
FAKE_QUANTIZE = """#!{python}
import json, shutil, sys
shutil.copyfile(sys.argv[1], sys.argv[2])
open(sys.argv[2] + ".argv", "w").write(json.dumps(sys.argv[1:]))
"""


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    converter = tmp_path / "convert_hf_to_gguf.py"
    converter.write_text(FAKE_CONVERTER)
    quantize = tmp_path / "llama-quantize"
    quantize.write_text(FAKE_QUANTIZE.format(python=sys.executable))
    quantize.chmod(0o755)
    monkeypatch.setenv(CONVERTER_ENV, str(converter))
    monkeypatch.setenv(QUANTIZE_ENV, str(quantize))
    return quantize


def test_q4_k_m_converts_to_f16_then_runs_llama_quantize(tiny_model_dir, tmp_path, fake_tools):
    import gguf

    out = tmp_path / "out" / "m.gguf"
    result = export_gguf(tiny_model_dir, out, quant="q4_k_m")
    converted = json.loads(gguf.GGUFReader(str(out)).fields["fake.argv"].contents())
    assert converted[-2:] == ["--outtype", "f16"] and converted[converted.index("--outfile") + 1].endswith(".f16.tmp")
    quantized = json.loads(Path(str(out) + ".argv").read_text())
    assert quantized[1:] == [str(out), "Q4_K_M"] and not Path(quantized[0]).exists()
    assert result["quantizer"] == str(fake_tools) and result["outtype"] == "q4_k_m"
    export_gguf(tiny_model_dir, tmp_path / "q8.gguf", quant="q8_0")  # the converter alone; no quantizer call
    assert json.loads(gguf.GGUFReader(str(tmp_path / "q8.gguf")).fields["fake.argv"].contents())[-1] == "q8_0"
    assert not Path(str(tmp_path / "q8.gguf") + ".argv").exists()


def test_quant_errors_name_the_fix(tiny_model_dir, tmp_path, fake_tools, monkeypatch):
    with pytest.raises(TailorError, match="unknown GGUF quantisation 'q3'; choose one of q8_0, q4_k_m"):
        export_gguf(tiny_model_dir, tmp_path / "m.gguf", quant="q3")
    monkeypatch.delenv(QUANTIZE_ENV)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(TailorError, match="needs llama.cpp's llama-quantize.*TAILOR_LLAMA_QUANTIZE"):
        export_gguf(tiny_model_dir, tmp_path / "m.gguf", quant="q4_k_m")
    (tmp_path / "failing").write_text("#!/bin/sh\necho 'cannot quantize: bad file' >&2\nexit 3\n")
    (tmp_path / "failing").chmod(0o755)
    monkeypatch.setenv(QUANTIZE_ENV, str(tmp_path / "failing"))
    with pytest.raises(TailorError, match="(?s)GGUF quantisation failed.*exit code 3.*cannot quantize: bad file"):
        export_gguf(tiny_model_dir, tmp_path / "m.gguf", quant="q4_k_m")
    assert not list(tmp_path.glob("*.tmp"))
