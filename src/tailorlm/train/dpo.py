"""Preference tuning (`tailor train dpo`): DPO on preference datasets with TRL's DPOTrainer.

It sits on the ladder's preference rung, after `tailor train sft`: start from the base model or
from an SFT model version (`--base proj:sft@v1`, whose adapter `load_model` merges first), attach
a fresh LoRA adapter, and push the policy towards `chosen` and away from `rejected`. Examples are
conversational, so TRL renders them with the tokenizer's chat template, as serving does.

The reference model costs no second copy with LoRA: TRL adds a frozen `ref` copy of the fresh
adapter (zero-initialised, so it equals the starting model) and switches to it for the reference
log-probs. Full fine-tuning needs a real copy, which we make before training starts.
"""

import contextlib
import dataclasses
from pathlib import Path

from tailorlm.errors import TailorError
from tailorlm.train.config import TrainConfig
from tailorlm.train.sft import load_splits
from tailorlm.train.trainer import (PausedTime, fit, load_model, save_and_summarise, standard_callbacks,
                                   training_arguments)

REWARD_KEYS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")


def to_example(content: dict) -> dict:
    """A preference record as a conversational DPO example (TRL applies the chat template).

    >>> to_example({"prompt": "Sky?", "chosen": "blue", "rejected": "green"})["chosen"]
    [{'role': 'assistant', 'content': 'blue'}]
    """
    prompt = content["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": content["chosen"]}],
            "rejected": [{"role": "assistant", "content": content["rejected"]}]}


def dpo_config(cfg: TrainConfig, out: Path, has_eval: bool, config_class=None):
    """Tailor's training arguments (precision, schedule, eval, checkpoints) as a DPOConfig (or, for
    KTO, `config_class`: TRL's preference configs share these fields)."""
    from trl import DPOConfig

    base = training_arguments(cfg, out, has_eval)
    # gradient_checkpointing* are deprecated aliases mirrored from activation_checkpointing*; copying them
    # would warn, and leaving them to DPOConfig's own default (True) would silently turn checkpointing on.
    kwargs = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)
              if f.init and not f.name.startswith("gradient_checkpointing")}
    kwargs.update(beta=cfg.beta, max_length=cfg.max_seq_len, precompute_ref_log_probs=False)
    return (config_class or DPOConfig)(**kwargs)


def reward_callback(project, run_id: str, keys=REWARD_KEYS):
    """Stores DPO's reward margins and accuracies (or KTO's `keys`), which `metrics_callback` does not know about."""
    from transformers import TrainerCallback

    class RewardMetrics(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            for key, value in (logs or {}).items():
                if key.removeprefix("eval_") in keys and isinstance(value, (int, float)):
                    project.store.upsert_metric(run_id, state.global_step, key, float(value))

    return RewardMetrics()


@contextlib.contextmanager
def quiet_datasets():
    """TRL tokenizes through `datasets.map`, whose progress bars would break into Tailor's own."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()


def make_trainer(model, ref_model, args, train, evals, tokenizer, callbacks):
    from trl import DPOTrainer

    class TailorDPOTrainer(PausedTime, DPOTrainer):
        @property
        def tokens_seen(self) -> int:  # what metrics_callback reads for tokens/s; TRL counts non-pad tokens
            return self._total_train_tokens

    return TailorDPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train, eval_dataset=evals,
                            processing_class=tokenizer, callbacks=callbacks)


def with_length(ds):
    """The `length` column that length-grouped samplers read (train and eval both use one)."""
    return ds.map(lambda e: {"length": len(e["prompt_ids"]) + max(len(e["chosen_ids"]), len(e["rejected_ids"]))})


def fit_lengths(trainer, cfg: TrainConfig, n_records: int, on_message) -> dict:
    """Add the length columns and apply the overlength policy to the training pairs.

    TRL itself drops pairs whose prompt alone fills max_length and truncates the rest."""
    ds = with_length(trainer.train_dataset)
    if trainer.eval_dataset is not None:
        trainer.eval_dataset = with_length(trainer.eval_dataset)
    over = sum(n > cfg.max_seq_len for n in ds["length"])
    counts = {"rejected": n_records - len(ds), "truncated": 0}
    if cfg.overlength == "reject":
        ds = ds.filter(lambda e: e["length"] <= cfg.max_seq_len)
        counts["rejected"] += over
    else:
        counts["truncated"] = over
    if counts["truncated"] or counts["rejected"]:
        on_message(f"over {cfg.max_seq_len} tokens: {counts['truncated']} truncated, {counts['rejected']} rejected")
    if not len(ds):
        raise TailorError(f"no trainable preference pairs after the length policy: {counts}")
    trainer.train_dataset = ds
    return counts


def run_dpo(project, cfg: TrainConfig, run_id: str, out: Path, checkpoint: Path | None, on_progress, on_message) -> dict:
    """Train one DPO run; same contract as `run_sft` (runs.train registers the result).

    >>> train(project, TrainConfig(method="dpo", dataset="prefs", base="acme:sft@v1"))  # doctest: +SKIP
    """
    import copy

    from datasets import Dataset

    manifest, splits = load_splits(project, cfg)  # refuses chat/text datasets, naming the right command
    model, tokenizer, base, parent = load_model(project, cfg)
    # Full fine-tuning changes the model itself, so the reference must be a frozen copy taken now;
    # TRL would otherwise reload it from the config's path, which for a merged SFT parent is the wrong base.
    ref_model = copy.deepcopy(model).eval() if cfg.adapter == "full" else None
    train = Dataset.from_list([to_example(r.content) for r in splits["train"]])
    evals = Dataset.from_list([to_example(r.content) for r in splits["validation"]]) if splits["validation"] else None
    args = dpo_config(cfg, out / "checkpoints", has_eval=evals is not None)
    trainer_ref, callback, callbacks = standard_callbacks(project, run_id, cfg, evals is not None, on_progress)
    callbacks.append(reward_callback(project, run_id))
    with quiet_datasets():
        trainer = make_trainer(model, ref_model, args, train, evals, tokenizer, callbacks)
        counts = fit_lengths(trainer, cfg, len(train), on_message)
    trainer_ref.append(trainer)
    seconds = fit(trainer, callback, checkpoint, out, "Lower --learning-rate or --beta, or check the data")
    history = trainer.state.log_history

    def last(key):
        return ([h[key] for h in history if key in h] or [None])[-1]

    extra = {"reward_margin_last": last("rewards/margins"), "reward_accuracy_last": last("rewards/accuracies"),
             "eval_reward_margin_last": last("eval_rewards/margins"), "beta": cfg.beta, **counts}
    # Only the trained adapter is saved: TRL's frozen `ref` copy is a training detail.
    return save_and_summarise(project, trainer, tokenizer, cfg, out, manifest, base, parent, seconds,
                              len(trainer.train_dataset), extra, adapters=["default"])
