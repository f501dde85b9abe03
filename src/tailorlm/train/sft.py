"""Supervised fine-tuning (`sft`) on chat datasets, and continued pre-training (`cpt`) on documents.

Both go through the same engine: LoRA (or full) on the base model, padding-free batches,
length-grouped sampling, validation loss at every eval interval with early stopping, the best
checkpoint kept, and loss only where there are labels (assistant turns for sft, every token for cpt).
"""

import time
from pathlib import Path

from tailorlm.errors import TailorError
from tailorlm.train.config import TrainConfig
from tailorlm.train.data import PackedCollator, PaddedCollator, encode_chat, encode_text, fit_length, pack_blocks
from tailorlm.train.trainer import load_model, make_trainer_class, metrics_callback, training_arguments

NEEDS = {"sft": "chat", "cpt": "text", "pretrain": "text"}


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
    return fit_length([encode_chat(tokenizer, r.content["messages"]) for r in records], cfg.max_seq_len, cfg.overlength)


def run_sft(project, cfg: TrainConfig, run_id: str, out: Path, checkpoint: Path | None, on_progress, on_message) -> dict:
    from datasets import Dataset
    from transformers import EarlyStoppingCallback

    manifest, splits = load_splits(project, cfg)
    model, tokenizer, base, parent = load_model(project, cfg)
    train_ex, counts = encode_split(tokenizer, splits["train"], cfg)
    eval_ex, _ = encode_split(tokenizer, splits["validation"], cfg) if splits["validation"] else ([], {})
    if counts.get("truncated") or counts.get("rejected"):
        on_message(f"over {cfg.max_seq_len} tokens: {counts['truncated']} truncated, {counts['rejected']} rejected")
    if not train_ex:
        raise TailorError(f"no trainable examples in {manifest['id']} after the length policy: {counts}")
    collator = PackedCollator() if cfg.packing else PaddedCollator(tokenizer.pad_token_id)
    args = training_arguments(cfg, out / "checkpoints", has_eval=bool(eval_ex))
    trainer_ref: list = []
    callback = metrics_callback(project, run_id, trainer_ref, on_progress)
    callbacks = [callback]
    if eval_ex and cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = make_trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(train_ex),
                                   eval_dataset=Dataset.from_list(eval_ex) if eval_ex else None,
                                   data_collator=collator, processing_class=tokenizer, callbacks=callbacks)
    trainer_ref.append(trainer)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # Tailor reports progress itself
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - started
    if callback.nan_step is not None:
        from tailorlm.train.trainer import last_checkpoint

        raise TailorError(f"the training loss became NaN at step {callback.nan_step}; training stopped. The last good "
                          f"checkpoint is {last_checkpoint(out / 'checkpoints') or 'none (the run had not saved yet)'}. "
                          "Lower --learning-rate or check the data")
    final = out / "model"
    trainer.model.save_pretrained(final)
    tokenizer.save_pretrained(final)  # the chat template and EOS training used travel with the model
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    rel = str(final.relative_to(project.root))
    metrics = {"steps": trainer.state.global_step, "train_loss_first": losses[0] if losses else None,
               "train_loss_last": losses[-1] if losses else None, "eval_loss_best": min(evals) if evals else None,
               "examples": len(train_ex), "tokens_seen": trainer.tokens_seen, "seconds": round(seconds, 1),
               "tokens_per_s": round(trainer.tokens_seen / seconds, 1) if seconds else None, **counts}
    return {"base": base, "parent": parent["id"] if parent else None, "dataset_version": manifest["id"],
            "adapter_path": rel if cfg.adapter != "full" else None, "weights_path": rel if cfg.adapter == "full" else None,
            "metrics": metrics, "best_checkpoint": trainer.state.best_model_checkpoint}
