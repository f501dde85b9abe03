"""A training run's configuration: every knob with its default and a description.

The resolved config (defaults filled in) is written beside the run's outputs as `config.yaml`,
and `tailor train sft --config that/config.yaml` runs it again.
"""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


# OpenAI's `n_epochs: "auto"`, as its fine-tuning data-prep guide states it (openai-cookbook,
# examples/Chat_finetuning_data_prep.ipynb): 3 epochs, unless that shows the model fewer than 100
# or more than 25,000 examples, bounded to 1..25 epochs.
TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES, MIN_EPOCHS, MAX_EPOCHS = 3, 100, 25_000, 1, 25


def auto_epochs(n_examples: int) -> int:
    """Epochs for a training set of `n_examples` under the auto rule.

    >>> auto_epochs(300), auto_epochs(20), auto_epochs(20_000)
    (3, 5, 1)
    """
    n = max(1, n_examples)
    if n * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_EPOCHS, MIN_TARGET_EXAMPLES // n)
    if n * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_EPOCHS, MAX_TARGET_EXAMPLES // n)
    return TARGET_EPOCHS


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["sft", "dpo", "cpt", "pretrain", "grpo", "kto"] = Field(
        "sft", description="sft: chat examples; dpo: preference pairs; cpt: documents; pretrain: a new model from documents; "
        "grpo: sampled answers to chat prompts, scored by rewards; kto: answers marked good or bad (unpaired thumbs).")
    dataset: str = Field(..., description="Dataset version to train on: NAME, NAME@latest or NAME@HASH.")
    base: str | None = Field(None, description="Base model (embedded name, HF id, folder) or a model version id to start from; "
                                               "default: the project's generator.")
    name: str | None = Field(None, description="Model name to register versions under; default: the project name.")
    system_prompt: str | None = Field(
        None, description="sft: system prompt put before every example that has none. The model version keeps it, and "
        "the sft rung prompts with it, so the model is served the way it was trained.")
    rung: Literal["sft", "hybrid"] = Field(
        "sft", description="How the model version is served: sft (the prompt alone) or hybrid (with retrieved sources; "
        "for models trained on RAFT data).")
    adapter: Literal["lora", "qlora", "full"] = Field("lora", description="lora (default), qlora (4-bit base, CUDA only) or full fine-tuning.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on the LoRA branch. 0 by default: on CPU, 0.05 made steps ~1.4x slower "
        "(a copy of every adapted layer's input), for little regularisation on small datasets.")
    target_modules: list[str] | str = Field("all-linear", description="Modules that get LoRA adapters; all-linear or a list of names.")
    lora_layers: int | None = Field(
        None, ge=1, description="Adapt only the last N decoder layers (null: all). The backward pass then stops below "
        "them: faster and lighter, and the lower layers' general features are left as they were.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (use ~1e-5 for full fine-tuning).")
    epochs: float | Literal["auto"] = Field(
        "auto", description="Passes over the training split, or auto: 3, raised for tiny sets to reach 100 examples "
        "seen and lowered for big ones to stay under 25,000 (OpenAI's n_epochs auto rule; see auto_epochs).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    batch_size: int = Field(8, ge=1, description="Sequences per optimizer step (per device).")
    micro_batch_size: int = Field(
        8, ge=1, description="Sequences per forward pass; batch_size is reached by accumulating micro-batches: "
        "the same updates for a fraction of the activation memory. With micro_batch_tokens, 8 measured fastest within "
        "0.6x the naive loop's memory on CPU (docs/benchmarks.md).")
    micro_batch_tokens: int | None = Field(
        512, ge=16, description="Largest forward pass in tokens (sequences x padded length): a micro-batch above it runs "
        "as several passes with the same gradients, so memory stays bounded on long sequences. null: never split.")
    grad_accum: int = Field(1, ge=1, description="Steps whose gradients are accumulated before an update.")
    max_seq_len: int = Field(1024, ge=16, description="Longest sequence in tokens.")
    overlength: Literal["truncate", "reject"] = Field("truncate", description="What to do with longer sequences; both are counted.")
    packing: bool = Field(
        False, description="Padding-free batches: sequences concatenated into one row, attention kept within each. Off by "
        "default: on CPU, length-grouped padded batches with share_prefix measured faster (docs/benchmarks.md).")
    share_prefix: bool = Field(
        True, description="Run the unlabelled prefix that all sequences of a micro-batch share (the system prompt) once "
        "per micro-batch instead of once per sequence. Same loss and gradients. Padded batches only; off with "
        "gradient_checkpointing.")
    fused_lora: bool = Field(
        True, description="Llama-family models with LoRA in fp32: Tailor's fused forward (q/k/v and gate/up as single "
        "products, hand-written LoRA gradients, the shared prefix inside the same products; train/fastpath.py). Same loss "
        "and gradients; on CPU 1.18x the tokens/s with less memory (docs/benchmarks.md). Off, or for other models: "
        "transformers' forward.")
    group_by_length: bool = Field(True, description="Batch sequences of similar length together.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass: less memory, ~30% slower.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 where the GPU supports it, else fp32.")
    warmup_ratio: float = Field(0.03, ge=0, le=0.5, description="Share of steps spent warming up the learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    eval_steps: int = Field(50, ge=1, description="Validation loss every this many steps (and a checkpoint).")
    early_stopping_patience: int | None = Field(3, ge=1, description="Stop after this many evaluations without improvement; null: never.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk besides the best one.")
    logging_steps: int = Field(1, ge=1, description="Log the training loss every this many steps.")
    beta: float = Field(0.1, ge=0, description="dpo, kto, grpo: strength of the KL anchor to the reference model.")
    num_generations: int = Field(4, ge=2, description="grpo: answers sampled per prompt; each is scored against its group's mean.")
    max_completion_tokens: int = Field(64, ge=1, description="grpo: longest sampled answer in tokens.")
    temperature: float = Field(1.0, gt=0, description="grpo: sampling temperature of the answers.")
    rewards: list[dict] = Field(
        default_factory=list, description="grpo: [{kind, weight, ...options}] (train/rewards.py: label, label_valid, schema, "
        "reference, length, format, python, judge), summed with their weights; empty: from the task.")
    seed: int = Field(0, description="Seed for initialisation, shuffling and dropout.")
    compute_flops: float | None = Field(None, gt=0, description="pretrain: training budget in FLOPs; sizes the model the Chinchilla way.")
    params: int | None = Field(None, ge=1000, description="pretrain: model size in parameters (instead of a FLOP budget).")
    vocab_size: int = Field(8000, ge=256, description="pretrain: BPE vocabulary trained on the corpus.")
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list, description="Also log to these trackers: tensorboard (events in the run's tensorboard/ "
        "folder; needs tensorboard or tensorboardX) or mlflow (needs mlflow; MLFLOW_TRACKING_URI says where).")
    launcher: Literal["none", "accelerate"] = Field("none", description="none: this process; accelerate: multi-GPU / multi-node.")
    gpus: int = Field(1, ge=1, description="accelerate: GPUs per node.")
    processes: int | None = Field(
        None, ge=1, description="accelerate without GPUs: data-parallel CPU processes on this machine (torchrun, gloo), "
        "each with batch_size sequences per step; set, it replaces gpus and strategy (always DDP).")
    nodes: int = Field(1, ge=1, description="accelerate: machines.")
    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field("fsdp", description="accelerate: how the model is spread over GPUs.")


def resolve_config(config: "str | Path | dict | TrainConfig | None" = None, **fields) -> TrainConfig:
    """A run's config: the defaults, under a config.yaml (or dict) to start from, under the fields given.

    Fields that are None count as not given, so a CLI can pass every flag. A missing dataset and an invalid
    value are one-line errors naming the field.

    >>> resolve_config(None, dataset="tickets", epochs=1).epochs
    1.0
    """
    import yaml

    from tailorlm.errors import TailorError

    if isinstance(config, TrainConfig):
        values = config.model_dump()
    elif isinstance(config, dict):
        values = dict(config)
    elif config:
        values = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    else:
        values = {}
    values.update({k: v for k, v in fields.items() if v is not None})
    if not values.get("dataset"):
        raise TailorError("which dataset? pass --dataset NAME (see `tailor data list`)")
    try:
        return TrainConfig.model_validate(values)
    except Exception as e:  # pydantic: say which field
        raise TailorError(f"invalid training config: {e}") from e
