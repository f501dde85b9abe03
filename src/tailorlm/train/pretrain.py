"""`tailor train pretrain`: a small model from scratch on the project's documents.

1. Train a byte-level BPE tokenizer on the corpus (HF tokenizers).
2. Size the model: from a FLOP budget, Chinchilla's compute-optimal N (about 20 tokens per
   parameter), or a given parameter count; build a Llama config of that size.
3. Train it as causal LM over packed documents (the cpt engine, all weights trainable) and
   register it. At toy scale here; the same config scales on GPUs through --launcher accelerate.
"""

import math
from pathlib import Path

from tailorlm.errors import TailorError
from tailorlm.train.config import TrainConfig


def plan(cfg: TrainConfig, corpus_tokens: int) -> dict:
    """Model size and token budget for a run, with the reasoning spelled out."""
    from tailorlm.train.scaling import chinchilla_tokens, compute_optimal

    if cfg.params:
        n = cfg.params
        source = "given --params"
    elif cfg.compute_flops:
        n = compute_optimal(cfg.compute_flops).n_params
        source = f"Chinchilla-optimal for {cfg.compute_flops:.3g} FLOPs (D = 20 N)"
    else:
        n = max(1e5, corpus_tokens / 20)  # Chinchilla's 20 tokens per parameter, from the data we have
        source = f"20 tokens per parameter of the {corpus_tokens} corpus tokens"
    want = chinchilla_tokens(n)
    return {"params_target": int(n), "sizing": source, "chinchilla_tokens": int(want), "corpus_tokens": corpus_tokens,
            "epochs_for_chinchilla": round(want / corpus_tokens, 2) if corpus_tokens else None}


def build_base(project, cfg: TrainConfig, out: Path, on_message) -> tuple[str, dict]:
    """Tokenizer plus a randomly initialised model, saved as a folder the cpt engine starts from."""
    import torch
    from transformers import LlamaForCausalLM

    from tailorlm.data.versions import load_records, resolve
    from tailorlm.train.scaling import count_params, model_config_for
    from tailorlm.train.tokenizer import train_bpe_tokenizer

    manifest = resolve(project, cfg.dataset)
    if manifest["kind"] != "text":
        raise TailorError(f"dataset {manifest['id']} holds {manifest['kind']} records; pretraining needs documents (text)")
    texts = [r.content["text"] for r in load_records(project, manifest)]
    base = out / "base"
    tokenizer = train_bpe_tokenizer(texts, vocab_size=cfg.vocab_size, out_dir=base)
    corpus_tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    sizing = plan(cfg, corpus_tokens)
    config = model_config_for(sizing["params_target"], vocab_size=len(tokenizer), max_seq_len=cfg.max_seq_len,
                              bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(cfg.seed)
    LlamaForCausalLM(config).save_pretrained(base)
    sizing.update(params=count_params(config), hidden_size=config.hidden_size, layers=config.num_hidden_layers,
                  vocab_size=len(tokenizer))
    on_message(f"pretraining a {sizing['params'] / 1e6:.1f}M-parameter model ({sizing['sizing']}); "
               f"corpus {corpus_tokens} tokens, Chinchilla wants {sizing['chinchilla_tokens']}")
    return str(base), sizing


def run_pretrain(project, cfg: TrainConfig, run_id: str, out: Path, checkpoint, on_progress, on_message) -> dict:
    from tailorlm.train.sft import run_sft

    base_dir = out / "base"
    if checkpoint is None or not base_dir.exists():
        base, sizing = build_base(project, cfg, out, on_message)
    else:  # resuming: the tokenizer and initial weights are already there
        base, sizing = str(base_dir), {}
    engine_cfg = cfg.model_copy(update={"method": "cpt", "adapter": "full", "base": base})
    if cfg.max_steps < 0 and sizing.get("epochs_for_chinchilla"):
        engine_cfg = engine_cfg.model_copy(update={"epochs": max(1.0, math.ceil(sizing["epochs_for_chinchilla"]))})
    result = run_sft(project, engine_cfg, run_id, out, checkpoint, on_progress, on_message)
    result["metrics"].update({k: v for k, v in sizing.items() if k != "sizing"})
    result["base"] = "scratch:" + str(Path(base).relative_to(project.root))
    return result
