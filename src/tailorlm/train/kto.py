"""Unpaired preference tuning (`tailor train kto`): KTO on answers marked good or bad, with TRL's KTOTrainer.

For teams whose feedback is thumbs up or down on single answers, with no second answer to the same
prompt to pair it with (DPO's need). KTO (Ethayarajh et al. 2024) raises the likelihood of desirable
answers and lowers that of undesirable ones, each relative to the reference model and to a KL
baseline estimated from mismatched prompt/answer pairs in the batch.

The dataset is a chat dataset whose records end with the assistant's answer and carry its verdict
in `meta.label` (up/down, good/bad, true/false, 1/0): `tailor loop` writes `feedback-kto` that way
from thumbs, and a JSONL source gives it as each line's `label`. As with DPO, the reference costs
no second model with LoRA: TRL runs the model with the adapter disabled.
"""

from pathlib import Path

from tailorlm.errors import TailorError
from tailorlm.train.config import TrainConfig

GOOD, BAD = {"up", "good", "true", "1", "yes", "desirable"}, {"down", "bad", "false", "0", "no", "undesirable"}
KTO_KEYS = ("rewards/chosen_sum", "rewards/rejected_sum", "logps/chosen_sum", "logps/rejected_sum", "kl",
            "count/chosen", "count/rejected")


def verdict(record) -> bool:
    """True for a record marked desirable, False for undesirable; a clear error otherwise."""
    label = str(record.meta.get("label", "")).strip().lower()
    if label in GOOD:
        return True
    if label in BAD:
        return False
    where = f"{record.meta.get('path', record.meta.get('source', '?'))}:{record.meta.get('line', '?')}"
    raise TailorError(f"{where}: record {record.id} has label {record.meta.get('label')!r}; kto needs each answer "
                      f"marked up or down (label: {'|'.join(sorted(GOOD))} or {'|'.join(sorted(BAD))})")


def to_example(record) -> dict:
    """A chat record with its verdict as a conversational KTO example (TRL applies the chat template).

    >>> from tailorlm.data.record import Record
    >>> to_example(Record("1", "chat", {"messages": [{"role": "user", "content": "Sky?"},
    ...            {"role": "assistant", "content": "blue"}]}, {"label": "up"}))["label"]
    True
    """
    msgs = record.content.get("messages") or []
    if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
        raise TailorError(f"record {record.id}: kto needs a conversation that ends with the assistant's answer")
    return {"prompt": msgs[:-1], "completion": [msgs[-1]], "label": verdict(record)}


def run_kto(project, cfg: TrainConfig, run_id: str, out: Path, checkpoint: Path | None, on_progress, on_message) -> dict:
    """Train one KTO run; same contract as `run_sft` (runs.train registers the result)."""
    import copy

    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    from tailorlm.train.dpo import dpo_config, quiet_datasets, reward_callback
    from tailorlm.train.sft import load_splits
    from tailorlm.train.trainer import PausedTime, fit, load_model, save_and_summarise, standard_callbacks

    manifest, splits = load_splits(project, cfg)
    import random

    train_rows = [to_example(r) for r in splits["train"]]
    random.Random(cfg.seed).shuffle(train_rows)
    eval_rows = [to_example(r) for r in splits["validation"]]
    up = sum(r["label"] for r in train_rows)
    on_message(f"kto: {up} answers marked up, {len(train_rows) - up} down")
    model, tokenizer, base, parent = load_model(project, cfg)
    ref_model = copy.deepcopy(model).eval() if cfg.adapter == "full" else None
    args = dpo_config(cfg, out / "checkpoints", has_eval=bool(eval_rows), config_class=KTOConfig)
    # KTO's KL baseline pairs each prompt with its neighbour's answer in a fixed-order batch; TRL refuses
    # any other sampling. Shuffled once here instead, so the batches still mix the data.
    args.train_sampling_strategy = "sequential"
    trainer_ref, callback, callbacks = standard_callbacks(project, run_id, cfg, bool(eval_rows), on_progress)
    callbacks.append(reward_callback(project, run_id, KTO_KEYS))

    class TailorKTOTrainer(PausedTime, KTOTrainer):
        @property
        def tokens_seen(self) -> int:  # what metrics_callback reads for tokens/s
            return self._total_train_tokens

    with quiet_datasets():
        trainer = TailorKTOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=Dataset.from_list(train_rows),
                                   eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
                                   processing_class=tokenizer, callbacks=callbacks)
    trainer_ref.append(trainer)
    seconds = fit(trainer, callback, checkpoint, out, "Lower --learning-rate or --beta, or check the data")
    history = trainer.state.log_history

    def last(key):
        return ([h[key] for h in history if key in h] or [None])[-1]

    extra = {"desirable": up, "undesirable": len(train_rows) - up, "kl_last": last("kl"), "beta": cfg.beta}
    return save_and_summarise(project, trainer, tokenizer, cfg, out, manifest, base, parent, seconds,
                              len(train_rows), extra, adapters=["default"])
