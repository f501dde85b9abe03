"""TailorTrainer: the transformers Trainer subclass behind `tailor train sft|cpt` (see train/trainer.py).

It adds what Tailor's data needs: micro-batches split by token count, the loss projected to the
vocabulary only at labelled positions (`supervised_loss`), the fused LoRA fast path and shared-prefix
forward (`decoder_hidden_states`), tokens/s counting, validation and checkpoint time kept apart
(`PausedTime`), and a checkpoint that fails half-way removed. This module imports transformers;
`train.trainer.make_trainer_class` imports it only when a run starts.
"""

import shutil
from pathlib import Path

import torch
from transformers import Trainer

from tailorlm.errors import TailorError
from tailorlm.train.trainer import (PausedTime, consumed_tokens, decoder_hidden_states, last_checkpoint,
                                    supervised_loss)


class TailorTrainer(PausedTime, Trainer):
    """transformers' Trainer over Tailor's tokenized, masked batches (train/data.py); sft.py sets
    `fused_lora` and `micro_batch_tokens` on each instance from the run's TrainConfig."""

    tokens_seen = 0
    fused_lora = True  # set from TrainConfig.fused_lora
    micro_batch_tokens = None  # and TrainConfig.micro_batch_tokens
    fast_plan = None
    flop_params = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        # A micro-batch over micro_batch_tokens runs as several forward/backward passes: the loss is
        # normalised by the whole batch's labelled tokens, so the gradients add up to the same.
        from tailorlm.train.data import split_rows

        parts = split_rows(inputs, self.micro_batch_tokens)
        loss = super().training_step(model, parts[0], num_items_in_batch)
        for part in parts[1:]:
            loss = loss + super().training_step(model, part, num_items_in_batch)
        return loss

    def floating_point_ops(self, inputs):
        # transformers' own figure (6 x tokens x non-embedding parameters), but it recounts the parameters
        # for every micro-batch (~30 ms each on the 135M model); they are counted once here.
        if self.flop_params is None:
            count = getattr(self.model, "num_parameters", None)
            self.flop_params = count(exclude_embeddings=True) if count else 0
        return 6 * int(inputs["input_ids"].numel()) * self.flop_params

    def fast_groups(self, model, inputs):
        """The fast forward's plan when this batch and model can use it (train/fastpath.py)."""
        from tailorlm.train import fastpath

        args = getattr(self, "args", None)
        if (not self.fused_lora or "position_ids" in inputs or (args is not None and (args.bf16 or args.fp16))
                or not fastpath.right_padded(inputs.get("attention_mask"))):
            return None
        if self.fast_plan is None or (self.fast_plan and not self.fast_plan[0][0].current()):
            self.fast_plan = fastpath.plan(model) or []  # [] remembers "not supported"
        return self.fast_plan or None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        prefix = inputs.pop("prefix_ids", None)
        ddp = model if isinstance(model, torch.nn.parallel.DistributedDataParallel) else None
        if ddp is not None:
            # This forward reaches into the decoder and the head, past DDP's own forward; DDP's pre- and
            # post-forward around it arm the gradient all-reduce exactly as that forward would.
            ddp._pre_forward()
            model = ddp.module
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        hidden = decoder_hidden_states(base.model, inputs, prefix, self.fast_groups(model, inputs))
        loss = supervised_loss(base.get_output_embeddings(), hidden, labels, num_items_in_batch)
        if model.training:  # tokens/s is a training figure; evaluation batches do not count
            self.tokens_seen += consumed_tokens(inputs, labels, prefix)
        if ddp is not None:
            if num_items_in_batch is not None and self.args.average_tokens_across_devices:
                # the count was every process's labelled tokens and DDP averages the gradients over the
                # processes: scaled back, the update is the one a single process with the whole batch makes.
                loss = loss * self.accelerator.num_processes
            loss = ddp._post_forward(loss)
        return (loss, {"loss": loss}) if return_outputs else loss

    def _save_checkpoint(self, model, trial):
        # A checkpoint that fails half-way (a full disk) is removed, so resume never picks it;
        # the previous checkpoint is untouched because each one has its own folder.
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        try:
            return super()._save_checkpoint(model, trial)
        except OSError as e:
            shutil.rmtree(folder, ignore_errors=True)
            prev = last_checkpoint(Path(self.args.output_dir))
            raise TailorError(f"could not save checkpoint {folder.name}: {e.strerror or e}; "
                              f"the previous checkpoint is intact: {prev or 'none yet'}") from e
