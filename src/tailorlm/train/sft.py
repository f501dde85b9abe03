"""Supervised fine-tuning (`sft`) on chat datasets, and continued pre-training (`cpt`) on documents.

Both go through the same engine: LoRA (or full) on the base model, length-grouped batches whose
shared prompt prefix is computed once (or packed, padding-free rows), the fused LoRA forward where
the model allows (train/fastpath.py), validation loss at every eval
interval with early stopping, the best checkpoint kept, and loss only where there are labels
(assistant turns for sft, every token for cpt).
"""

from pathlib import Path

from tailorlm.errors import TailorError
from tailorlm.train.config import TrainConfig
from tailorlm.train.data import PackedCollator, PaddedCollator, encode_chat, encode_text, fit_length, pack_blocks
from tailorlm.train.trainer import (fit, load_model, make_trainer_class, save_and_summarise, standard_callbacks,
                                    training_arguments)

NEEDS = {"sft": "chat", "cpt": "text", "pretrain": "text", "grpo": "chat", "kto": "chat"}


def load_splits(project, cfg: TrainConfig) -> tuple[dict, dict]:
    """(manifest, {split: records}) of the run's dataset, checked for the method's kind."""
    from tailorlm.data.versions import load_records, resolve

    manifest = resolve(project, cfg.dataset)
    want = NEEDS.get(cfg.method, "preference")
    if manifest["kind"] != want:
        hint = {"chat": "tailor train sft", "text": "tailor train cpt", "preference": "tailor train dpo"}[manifest["kind"]]
        raise TailorError(f"dataset {manifest['id']} holds {manifest['kind']} records; `tailor train {cfg.method}` "
                          f"needs {want} records (for {manifest['kind']} data use `{hint}`)")
    splits = {s: load_records(project, manifest, s) for s in manifest["splits"]}
    train = splits.get("train") or splits.get("data")
    if not train:
        raise TailorError(f"dataset {manifest['id']} has no training records")
    return manifest, {"train": train, "validation": splits.get("validation", [])}


def encode_split(tokenizer, records, cfg: TrainConfig) -> tuple[list[dict], dict]:
    if cfg.method == "cpt":
        return pack_blocks([encode_text(tokenizer, r.content["text"]) for r in records], cfg.max_seq_len), {}
    from tailorlm.rungs.base import with_system

    return fit_length([encode_chat(tokenizer, with_system(r.content["messages"], cfg.system_prompt)) for r in records],
                      cfg.max_seq_len, cfg.overlength)


def run_sft(project, cfg: TrainConfig, run_id: str, out: Path, checkpoint: Path | None, on_progress, on_message) -> dict:
    from datasets import Dataset

    manifest, splits = load_splits(project, cfg)
    model, tokenizer, base, parent = load_model(project, cfg)
    from tailorlm.train.data import own_outputs_warning

    warning = own_outputs_warning(splits["train"], {base, cfg.base or base})
    if warning:
        on_message(f"warning: {warning}")
    train_ex, counts = encode_split(tokenizer, splits["train"], cfg)
    eval_ex, _ = encode_split(tokenizer, splits["validation"], cfg) if splits["validation"] else ([], {})
    if counts.get("truncated") or counts.get("rejected"):
        on_message(f"over {cfg.max_seq_len} tokens: {counts['truncated']} truncated, {counts['rejected']} rejected")
    if not train_ex:
        raise TailorError(f"no trainable examples in {manifest['id']} after the length policy: {counts}")
    # Gradient checkpointing drops KV caches inside the layers, so the shared prefix needs it off.
    collator = (PackedCollator() if cfg.packing else
                PaddedCollator(tokenizer.pad_token_id, share_prefix=cfg.share_prefix and not cfg.gradient_checkpointing))
    args = training_arguments(cfg, out / "checkpoints", has_eval=bool(eval_ex), n_train=len(train_ex))
    trainer_ref, callback, callbacks = standard_callbacks(project, run_id, cfg, bool(eval_ex), on_progress)
    trainer = make_trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(train_ex),
                                   eval_dataset=Dataset.from_list(eval_ex) if eval_ex else None,
                                   data_collator=collator, processing_class=tokenizer, callbacks=callbacks)
    trainer.fused_lora = cfg.fused_lora and not cfg.gradient_checkpointing  # the fused forward keeps every activation
    trainer.micro_batch_tokens = cfg.micro_batch_tokens
    trainer_ref.append(trainer)
    seconds = fit(trainer, callback, checkpoint, out, "Lower --learning-rate or check the data")
    return save_and_summarise(project, trainer, tokenizer, cfg, out, manifest, base, parent, seconds, len(train_ex), counts)
