"""The training engine behind `tailor train sft|dpo|cpt`: a transformers Trainer with Tailor's
data, loss, checkpoints, metrics and model registration.

Why a Trainer subclass and not TRL's SFTTrainer: Tailor tokenizes and masks itself (so the labels
are inspectable and identical to what serving renders), batches share their prompt prefix, the
forward is Tailor's fused one where the model allows (train/fastpath.py), and the loss projects to
the vocabulary only at supervised positions. With a 49k vocabulary and short answers, most of the LM
head's compute and memory would otherwise go to tokens that carry no loss; see docs/benchmarks.md for
the measured effects. DPO uses TRL's DPOTrainer (train/dpo.py).
"""

import json
import math
import os
import time
from pathlib import Path

from tailorlm.errors import TailorError
from tailorlm.train.config import TrainConfig
from tailorlm.train.data import IGNORE


class PausedTime:
    """Mixed into each Trainer subclass (Tailor's, DPO's, KTO's): time spent in validation passes and
    checkpoint writes goes to `paused_seconds`, so that tokens/s and `train_seconds` are training figures."""

    paused_seconds = 0.0

    def evaluate(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.paused_seconds += time.perf_counter() - started

    def _save_checkpoint(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return super()._save_checkpoint(*args, **kwargs)
        finally:
            self.paused_seconds += time.perf_counter() - started


def make_trainer_class():
    """`TailorTrainer` (train/tailor_trainer.py), imported only when called so that importing this
    module does not import transformers."""
    from tailorlm.train.tailor_trainer import TailorTrainer

    return TailorTrainer


def decoder_hidden_states(decoder, inputs: dict, prefix, groups):
    """The decoder's last hidden states for a batch: through the fused fast path when it has a plan
    (`groups`), with a shared prefix run once, or through transformers' own forward."""
    if groups:
        from tailorlm.train.fastpath import hidden_states

        return hidden_states(decoder, groups, inputs["input_ids"], prefix)
    if prefix is not None:
        return shared_prefix_forward(decoder, prefix, inputs)
    # use_cache=False matters: with a KV cache object present, transformers does not turn the
    # restarting position ids of a packed row into a block-diagonal mask (test_train.py checks).
    return decoder(**inputs, use_cache=False).last_hidden_state


def supervised_loss(head, hidden, labels, num_items_in_batch=None):
    """Next-token cross-entropy over the labelled positions, divided by the batch's labelled tokens
    (`num_items_in_batch` when the Trainer counted them over an accumulated batch). The hidden states
    are projected to the vocabulary only where there is a label: the answer tokens."""
    import torch
    import torch.nn.functional as F

    target = labels[:, 1:]
    keep = target != IGNORE
    logits = head(hidden[:, :-1][keep]).float()
    loss = F.cross_entropy(logits, target[keep], reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    if torch.is_tensor(count):
        count = count.to(loss.device)
    return loss / count


def consumed_tokens(inputs: dict, labels, prefix) -> int:
    """Every example's own tokens, its copy of a shared prefix included: the data a batch consumed."""
    seen = int(inputs["input_ids"].numel() if "attention_mask" not in inputs else inputs["attention_mask"].sum())
    return seen + (prefix.shape[1] * labels.shape[0] if prefix is not None else 0)


def shared_prefix_forward(decoder, prefix, inputs: dict):
    """The decoder's hidden states for a right-padded batch whose sequences all begin with `prefix`
    (1, P), which is run once: its keys and values, still attached to the autograd graph, are repeated
    for each sequence, and the batch attends to them as a KV cache. Gradients flow back through the
    cache into the single prefix pass, summed over the sequences, as they would be over B copies."""
    import torch
    from transformers import DynamicCache

    from tailorlm.models.kv import with_cache

    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    batch, length, cut = ids.shape[0], ids.shape[1], prefix.shape[1]
    cache = DynamicCache(config=decoder.config)
    decoder(input_ids=prefix, use_cache=True, **with_cache(cache))
    cache.batch_repeat_interleave(batch)
    full_mask = torch.cat([mask.new_ones(batch, cut), mask], dim=1)
    positions = torch.arange(cut, cut + length, device=ids.device).unsqueeze(0).expand(batch, -1)
    return decoder(input_ids=ids, attention_mask=full_mask, position_ids=positions, use_cache=True,
                   **with_cache(cache)).last_hidden_state


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint: trainer_state.json is written last, so it marks completeness."""
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def metrics_callback(project, run_id: str, trainer_ref: list, on_progress):
    """Per-step metrics into the store (`run_metrics`), a NaN guard, and progress with tokens/s."""
    from transformers import TrainerCallback

    class Callback(TrainerCallback):
        started = time.perf_counter()
        nan_step = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero:  # one writer per run, however many processes train
                return
            logs = logs or {}
            step = state.global_step
            for key, value in logs.items():
                if isinstance(value, (int, float)) and key in ("loss", "eval_loss", "learning_rate", "grad_norm"):
                    if not math.isfinite(value):
                        if key == "loss":
                            self.nan_step = step
                            control.should_training_stop = True
                            control.should_save = False  # never checkpoint NaN weights
                        continue  # the store keeps finite numbers only
                    project.store.upsert_metric(run_id, step, key, float(value))
            trainer = trainer_ref[0]
            elapsed = time.perf_counter() - self.started - getattr(trainer, "paused_seconds", 0.0)
            tps = trainer.tokens_seen / elapsed if elapsed > 0 else 0.0
            project.store.upsert_metric(run_id, step, "tokens_per_s", tps)
            if on_progress:
                on_progress(step, state.max_steps, logs, tps)

    return Callback()


def precision_flags(cfg: TrainConfig) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    p = cfg.precision
    if p == "auto":
        p = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if p in ("bf16", "fp16") and not cuda:
        raise TailorError(f"precision {p} needs a GPU here; use --precision fp32 on CPU")
    return {"bf16": p == "bf16", "fp16": p == "fp16"}


def lora_targets(model, cfg: TrainConfig):
    """`cfg.target_modules`, or with `lora_layers` the full names of those linear layers in the last N
    decoder layers. Nothing below them then needs gradients, so autograd never goes there."""
    import re

    import torch

    if not cfg.lora_layers:
        return cfg.target_modules
    total = model.config.num_hidden_layers
    kept = set(range(max(0, total - cfg.lora_layers), total))
    names = []
    for name, module in model.named_modules():
        m = re.search(r"\.layers\.(\d+)\.", name)
        leaf = name.rsplit(".", 1)[-1]
        if (m and int(m.group(1)) in kept and isinstance(module, torch.nn.Linear)
                and (cfg.target_modules == "all-linear" or leaf in cfg.target_modules)):
            names.append(name)
    if not names:
        raise TailorError(f"lora_layers={cfg.lora_layers}: no {cfg.target_modules} layers found in decoder layers "
                          f"{min(kept)}-{max(kept)}")
    return names


def load_model(project, cfg: TrainConfig):
    """(model, tokenizer, base name, parent version) ready for training, with LoRA attached if asked."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tailorlm.models.local import resolve_model_path

    gen = project.config.models.generator
    base_ref = cfg.base or gen.model
    parent = None
    if ":" in base_ref and "@" in base_ref:  # a model version: start from its merged weights
        from tailorlm.train.registry import resolve

        parent = resolve(project, base_ref)
        base_ref = parent["base_model"]
    if parent and parent.get("weights_path"):  # a full fine-tune or a model pretrained here
        path = str(project.root / parent["weights_path"])
    else:
        path = resolve_model_path(base_ref)
    if cfg.adapter == "qlora":
        if not torch.cuda.is_available():
            raise TailorError("QLoRA needs a CUDA GPU (4-bit weights through bitsandbytes); none is present. "
                              "Use --adapter lora on this machine")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise TailorError("QLoRA needs bitsandbytes: pip install bitsandbytes") from e
    kwargs = {"trust_remote_code": gen.trust_remote_code}
    if cfg.adapter == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=gen.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    if parent and parent.get("adapter_path"):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, project.root / parent["adapter_path"]).merge_and_unload()
    if cfg.adapter in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model
        from transformers import set_seed

        set_seed(cfg.seed)  # the adapter's random initialisation too, not only the Trainer's shuffling

        if cfg.adapter == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=lora_targets(model, cfg), task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, base_ref, parent


def training_arguments(cfg: TrainConfig, out: Path, has_eval: bool, n_train: int = 0):
    """transformers' TrainingArguments for `cfg`; `n_train` examples resolve `epochs: auto`."""
    from transformers import TrainingArguments

    from tailorlm.train.config import auto_epochs

    epochs = auto_epochs(n_train) if cfg.epochs == "auto" else cfg.epochs

    eval_args = {}
    if has_eval:
        eval_args = dict(eval_strategy="steps", eval_steps=cfg.eval_steps, load_best_model_at_end=True,
                         metric_for_best_model="eval_loss", greater_is_better=False)
    micro = min(cfg.micro_batch_size, cfg.batch_size)
    return TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=micro, per_device_eval_batch_size=cfg.batch_size,
        # Accumulating micro-batches gives the same update as one big batch (the loss is normalised by
        # the labelled tokens of the whole accumulated batch), with a fraction of the activations.
        gradient_accumulation_steps=cfg.grad_accum * math.ceil(cfg.batch_size / micro), learning_rate=cfg.learning_rate, num_train_epochs=epochs,
        max_steps=cfg.max_steps, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio
        lr_scheduler_type="cosine", logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.eval_steps,
        save_total_limit=cfg.save_total_limit, seed=cfg.seed, data_seed=cfg.seed, report_to=list(cfg.report_to),
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers' new name for it
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        remove_unused_columns=False, dataloader_num_workers=0, dataloader_pin_memory=False, disable_tqdm=True, save_only_model=False,
        prediction_loss_only=True,
        logging_nan_inf_filter=False,  # a NaN must reach the guard, not be averaged away
        **precision_flags(cfg), **eval_args)


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def standard_callbacks(project, run_id: str, cfg: TrainConfig, has_eval: bool, on_progress):
    """(trainer_ref, metrics callback, callbacks): metrics and NaN guard, plus early stopping."""
    from transformers import EarlyStoppingCallback

    trainer_ref: list = []
    callback = metrics_callback(project, run_id, trainer_ref, on_progress)
    callbacks = [callback]
    if has_eval and cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    return trainer_ref, callback, callbacks


TRACKERS = {"tensorboard": (("tensorboard", "tensorboardX"), "pip install tensorboard"),
            "mlflow": (("mlflow",), "pip install mlflow")}


def check_trackers(report_to) -> None:
    """Fail before the model loads when a tracker named in `report_to` is not installed."""
    import importlib.util

    for name in report_to:
        modules, install = TRACKERS[name]
        if not any(importlib.util.find_spec(m) for m in modules):
            raise TailorError(f"report_to: {name} is not installed; {install}, or remove it from report_to")


def fit(trainer, callback, checkpoint: Path | None, out: Path, hint: str) -> float:
    """Train (resuming from `checkpoint`), stop with a clear message on a NaN loss; returns seconds.

    `trainer` mixes in `PausedTime`, which keeps its validation passes and checkpoint writes apart."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # Tailor reports progress itself
    if "tensorboard" in trainer.args.report_to:
        from transformers.integrations import TensorBoardCallback

        board = trainer.pop_callback(TensorBoardCallback)
        board.logging_dir = str(out / "tensorboard")  # the run's folder: `tensorboard --logdir` it
        trainer.add_callback(board)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if callback.nan_step is not None:
        raise TailorError(f"the training loss became NaN at step {callback.nan_step}; training stopped. The last good "
                          f"checkpoint is {last_checkpoint(out / 'checkpoints') or 'none (the run had not saved yet)'}. "
                          f"{hint}")
    return time.perf_counter() - started


def save_and_summarise(project, trainer, tokenizer, cfg: TrainConfig, out: Path, manifest: dict, base: str, parent,
                       seconds: float, examples: int, extra: dict, adapters: list[str] | None = None) -> dict:
    """Save the final model with its tokenizer, and the result every engine returns."""
    final = out / "model"
    if adapters and cfg.adapter != "full":
        trainer.model.save_pretrained(final, selected_adapters=adapters)
    else:
        trainer.model.save_pretrained(final)
    tokenizer.save_pretrained(final)  # the chat template and EOS training used travel with the model
    train_seconds = seconds - getattr(trainer, "paused_seconds", 0.0)
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    rel = str(final.relative_to(project.root))
    metrics = {"steps": trainer.state.global_step, "train_loss_first": losses[0] if losses else None,
               "train_loss_last": losses[-1] if losses else None, "eval_loss_best": min(evals) if evals else None,
               "examples": examples, "tokens_seen": trainer.tokens_seen, "seconds": round(seconds, 1),
               # training time: the run's wall time less its validation passes and checkpoint writes
               "train_seconds": round(train_seconds, 1),
               "tokens_per_s": round(trainer.tokens_seen / train_seconds, 1) if train_seconds > 0 else None, **extra}
    return {"base": base, "parent": parent["id"] if parent else None, "dataset_version": manifest["id"],
            "adapter_path": rel if cfg.adapter != "full" else None, "weights_path": rel if cfg.adapter == "full" else None,
            "metrics": metrics, "best_checkpoint": trainer.state.best_model_checkpoint}
