"""What `tailor export` writes for a model version: merged weights, a vLLM-ready adapter, or GGUF.

A model version is a base model (a folder or an embedded name), optionally a PEFT LoRA adapter
folder, and the tokenizer that training used (saved beside the adapter or weights). Each export
keeps that tokenizer, chat template and EOS, so the exported model formats and stops exactly as
it did in training and in `tailor serve`:
- `export_merged`: the adapter folded into the base, as an ordinary HF folder (transformers, vLLM,
  TGI, or the input to GGUF conversion);
- `export_adapter`: a clean PEFT folder for `vllm serve BASE --enable-lora --lora-modules name=path`;
- `export_gguf`: llama.cpp's converter run on a merged folder, for llama.cpp, Ollama, LM Studio;
  quantised to q8_0 by the converter or to q4_k_m by llama.cpp's llama-quantize.

>>> export_merged("smollm2-135m-instruct", Path("run/model"), Path("export/merged"))  # doctest: +SKIP
{'format': 'merged', 'path': 'export/merged', 'files': {...}, 'bytes': 538...}
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tailorlm.errors import TailorError
from tailorlm.models.local import resolve_model_path

DTYPES = ("float32", "float16", "bfloat16")
# The LoRA targets vLLM serves for Llama-style models (it packs q/k/v and gate/up itself).
VLLM_LORA_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
VLLM_DEFAULT_MAX_LORA_RANK = 16
CONVERTER_ENV = "TAILOR_GGUF_CONVERTER"
CONVERTER_NAMES = ("convert_hf_to_gguf.py", "convert_hf_to_gguf", "convert-hf-to-gguf")
QUANTIZE_ENV = "TAILOR_LLAMA_QUANTIZE"
QUANTIZE_NAMES = ("llama-quantize",)
# --quant: q8_0 the converter writes itself; k-quants need llama.cpp's compiled llama-quantize.
GGUF_QUANTS = {"q8_0": None, "q4_k_m": "Q4_K_M"}
PROVENANCE = "tailor_export.json"


def export_merged(base: str, adapter_dir: Path | None, out: Path, dtype: str = "float32",
                  max_shard_size: str = "5GB", overwrite: bool = False) -> dict:
    """Fold `adapter_dir` into `base` and write an HF folder: safetensors (sharded past
    `max_shard_size`), config.json, generation_config.json and the tokenizer.

    The tokenizer comes from the adapter folder when it has one, else from the base.
    >>> export_merged("smollm2-135m-instruct", Path("run/model"), Path("merged"))["files"]  # doctest: +SKIP
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise TailorError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    out = _empty_folder(out, overwrite)
    path = resolve_model_path(base)
    # Merge in fp32 and cast once at the end: merging in half precision rounds twice.
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        read_adapter_config(Path(adapter_dir))
        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    tokenizer_from = str(adapter_dir) if adapter_dir is not None and _has_tokenizer(Path(adapter_dir)) else path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    # Training taught the model to end its turn with the tokenizer's EOS (e.g. <|im_end|>); if
    # the base's generation config does not stop there, the exported model rambles past it.
    gen = model.generation_config
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        gen.eos_token_id = [i for i in eos if i is not None] + [tokenizer.eos_token_id]
    if gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id
    model.to(getattr(torch, dtype)).save_pretrained(out, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(out)
    return _finish(out, "merged", base=base, adapter=str(adapter_dir) if adapter_dir else None, dtype=dtype,
                   tokenizer_from=tokenizer_from)


def export_adapter(adapter_dir: Path, out: Path, base_model_name: str, overwrite: bool = False) -> dict:
    """Copy a PEFT LoRA adapter into a clean folder that vLLM's `--lora-modules name=path` loads,
    with `base_model_name_or_path` set to the name the serving engine knows the base by.

    Problems vLLM would refuse or mishandle (unsupported targets, a rank above its default
    `--max-lora-rank`) come back under "warnings"; a config that contradicts the weights raises.
    >>> export_adapter(Path("run/model"), Path("adapters/support"), "HuggingFaceTB/SmolLM2-135M-Instruct")  # doctest: +SKIP
    """
    from safetensors import safe_open

    adapter_dir = Path(adapter_dir)
    config = read_adapter_config(adapter_dir)
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise TailorError(f"{adapter_dir} has no adapter_model.safetensors; vLLM needs safetensors "
                          "(save the adapter with save_pretrained(..., safe_serialization=True))")
    warnings: list[str] = []
    targets = config.get("target_modules") or []
    if isinstance(targets, str):  # PEFT stores a regex as a plain string; its matches are unknown here
        warnings.append(f"target_modules is the pattern {targets!r}; vLLM supports only {sorted(VLLM_LORA_MODULES)}")
        targets = []
    with safe_open(str(weights), framework="pt") as f:
        ranks = {k: f.get_slice(k).get_shape()[0] for k in f.keys() if ".lora_A." in k}
        # The module names the weights really touch, from keys like ...self_attn.q_proj.lora_A.weight
        touched = {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in f.keys() if ".lora_" in k}
    unsupported = sorted((set(targets) | touched) - VLLM_LORA_MODULES)
    if unsupported:
        warnings.append(f"vLLM does not serve LoRA on {unsupported} for Llama-style models; "
                        f"retrain targeting only {sorted(VLLM_LORA_MODULES)}")
    if config.get("modules_to_save"):
        warnings.append(f"modules_to_save {config['modules_to_save']} are fully trained copies; vLLM ignores "
                        "or rejects them, so serve a merged export instead")
    if config.get("use_dora"):
        warnings.append("DoRA adapters are not supported by vLLM; serve a merged export instead")
    r, pattern = config["r"], config.get("rank_pattern") or {}
    if not pattern and any(rank != r for rank in ranks.values()):
        raise TailorError(f"{adapter_dir}: adapter_config.json says r={r} but the weights have ranks "
                          f"{sorted(set(ranks.values()))}; the folder is inconsistent, re-save the adapter")
    max_rank = max(ranks.values(), default=r)
    if max_rank > VLLM_DEFAULT_MAX_LORA_RANK:
        warnings.append(f"rank {max_rank} is above vLLM's default --max-lora-rank "
                        f"{VLLM_DEFAULT_MAX_LORA_RANK}; start vLLM with --max-lora-rank {max_rank} or more")
    if not _has_tokenizer(adapter_dir):
        warnings.append("no tokenizer in the adapter folder; vLLM will use the base's tokenizer and chat template")

    out = _empty_folder(out, overwrite)
    config = {**config, "base_model_name_or_path": base_model_name, "inference_mode": True}
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    shutil.copyfile(weights, out / weights.name)
    if _has_tokenizer(adapter_dir):
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(out)
    return _finish(out, "adapter", adapter=str(adapter_dir), base_model_name_or_path=base_model_name, r=r,
                   lora_alpha=config.get("lora_alpha"), max_rank=max_rank, target_modules=sorted(set(targets) | touched),
                   warnings=warnings, vllm_lora_module=f"{out.name}={out}")


def find_gguf_converter() -> list[str] | None:
    """The command that runs llama.cpp's convert_hf_to_gguf: from TAILOR_GGUF_CONVERTER, else PATH."""
    explicit = os.environ.get(CONVERTER_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise TailorError(f"{CONVERTER_ENV}={explicit} does not exist; point it at llama.cpp's convert_hf_to_gguf.py")
        return _as_command(path)
    found = next((p for p in map(shutil.which, CONVERTER_NAMES) if p), None)
    return _as_command(Path(found)) if found else None


def find_llama_quantize() -> str | None:
    """llama.cpp's llama-quantize: from TAILOR_LLAMA_QUANTIZE, else PATH."""
    explicit = os.environ.get(QUANTIZE_ENV)
    if explicit:
        if not Path(explicit).expanduser().is_file():
            raise TailorError(f"{QUANTIZE_ENV}={explicit} does not exist; point it at llama.cpp's llama-quantize")
        return str(Path(explicit).expanduser())
    return next((p for p in map(shutil.which, QUANTIZE_NAMES) if p), None)


def export_gguf(merged_dir: Path, out: Path, outtype: str = "f16", quant: str | None = None) -> dict:
    """Convert a merged HF folder (from `export_merged`) to one GGUF file with llama.cpp's converter,
    then check that the file reads back with `gguf.GGUFReader`. `quant` q8_0 is written by the
    converter; q4_k_m converts to f16 first, then llama.cpp's llama-quantize writes Q4_K_M.

    >>> export_gguf(Path("export/merged"), Path("export/model-q4_k_m.gguf"), quant="q4_k_m")  # doctest: +SKIP
    """
    merged_dir, out = Path(merged_dir), Path(out)
    if quant is not None and quant not in GGUF_QUANTS:
        raise TailorError(f"unknown GGUF quantisation {quant!r}; choose one of {', '.join(GGUF_QUANTS)}")
    if not (merged_dir / "config.json").is_file():
        raise TailorError(f"{merged_dir} is not a model folder (no config.json); GGUF needs merged weights, "
                          "so run export_merged (tailor export --format merged) first")
    quantizer = None
    if quant and GGUF_QUANTS[quant]:
        quantizer = find_llama_quantize()
        if quantizer is None:
            raise TailorError(f"--quant {quant} needs llama.cpp's llama-quantize, which was not found (set "
                              f"{QUANTIZE_ENV} or put it on PATH). Build it from llama.cpp (the source is also in "
                              "llama-cpp-python's source archive, vendor/llama.cpp): cmake -B build && cmake --build "
                              "build --target llama-quantize. --quant q8_0 needs only the converter.")
    if quant == "q8_0":
        outtype = "q8_0"
    command = find_gguf_converter()
    if command is None:
        raise TailorError(
            "GGUF export needs llama.cpp's convert_hf_to_gguf.py, which llama.cpp does not publish on PyPI and "
            f"which was not found (set {CONVERTER_ENV} or put it on PATH). Get it by cloning llama.cpp, or without "
            "building anything from llama-cpp-python's source archive: `pip download --no-deps --no-binary :all: "
            "llama-cpp-python && tar xzf llama_cpp_python-*.tar.gz`, then `pip install sentencepiece` and set "
            f"{CONVERTER_ENV}=<extracted>/vendor/llama.cpp/convert_hf_to_gguf.py (keep its conversion/ and gguf-py/ "
            f"folders beside it). Or run it yourself: python convert_hf_to_gguf.py {merged_dir} --outfile {out} "
            f"--outtype {outtype}")
    out.parent.mkdir(parents=True, exist_ok=True)
    converted = out.with_name(out.name + ".f16.tmp") if quantizer else out
    _run([*command, str(merged_dir), "--outfile", str(converted), "--outtype", "f16" if quantizer else outtype],
         "GGUF conversion")
    if quantizer:
        try:
            _run([quantizer, str(converted), str(out), GGUF_QUANTS[quant]], "GGUF quantisation")
        finally:
            converted.unlink(missing_ok=True)
    import gguf

    try:
        reader = gguf.GGUFReader(str(out))
    except (OSError, ValueError) as e:
        raise TailorError(f"the converter exited cleanly but {out} is not a readable GGUF file: {e}") from e
    arch = reader.fields.get("general.architecture")
    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return {"format": "gguf", "path": str(out), "bytes": out.stat().st_size, "outtype": quant or outtype,
            "architecture": arch.contents() if arch else None, "tensors": len(reader.tensors),
            "tensor_types": types, "converter": command[-1], **({"quantizer": quantizer} if quantizer else {})}


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        raise TailorError(f"{what} failed ({' '.join(cmd[:2])}, exit code {proc.returncode}):\n{tail}")


def _as_command(path: Path) -> list[str]:
    # A .py converter runs under this interpreter, which has torch and transformers; its shebang
    # may name another Python.
    return [sys.executable, str(path)] if path.suffix == ".py" else [str(path)]


def read_adapter_config(adapter_dir: Path) -> dict:
    """A LoRA adapter folder's adapter_config.json, refused with a one-line error unless it is LoRA with a rank.

    `serve/vllm.py` reads the ranks from it to size vLLM's --max-lora-rank.
    """
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        raise TailorError(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)")
    config = json.loads(path.read_text())
    if config.get("peft_type") != "LORA" or "r" not in config:
        raise TailorError(f"{path}: expected a LoRA adapter with its rank r, got peft_type={config.get('peft_type')!r}")
    return config


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer_config.json").is_file()


def _empty_folder(out: Path, overwrite: bool) -> Path:
    # Leftover shards from an earlier export would be loaded alongside the new ones.
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise TailorError(f"{out} is not empty; choose another folder or pass overwrite=True")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _finish(out: Path, fmt: str, **info) -> dict:
    """Write the export's provenance beside it and list what was written."""
    from tailorlm import __version__

    (out / PROVENANCE).write_text(json.dumps({"format": fmt, "tailorlm": __version__, **info}, indent=2))
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    return {"format": fmt, "path": str(out), "files": files, "bytes": sum(files.values()), **info}
