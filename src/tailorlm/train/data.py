"""Turning dataset versions into training tensors.

Chat records are rendered with the tokenizer's own chat template, the same one serving uses, and
only the assistant turns carry labels: each assistant message's content and the end-of-turn token
after it (so the model learns to stop). Everything else is -100. The masking is done on character
spans of the rendered text, mapped to tokens through the tokenizer's offsets, so it works for any
template whose rendering of a conversation prefix is a prefix of the whole.

Two ways to batch:
- `PaddedCollator` (the default, with length-grouped sampling so that little is padding) right-pads
  a micro-batch. With `share_prefix`, the longest token prefix that every sequence of the micro-batch
  shares and that carries no label (in practice the system prompt and the chat template's opening)
  is cut off and returned once as `prefix_ids`: the trainer runs it once and lets every sequence
  attend to its keys and values. The loss and the gradients are the same as without sharing (a
  test compares them); the prefix's compute is paid once per micro-batch instead of once per
  sequence.
- `PackedCollator` is padding-free: a batch is one row of concatenated sequences whose position ids
  restart at each sequence, which transformers turns into a block-diagonal causal mask. On CPU its
  attention over the whole row measured slower than length-grouped padding (docs/benchmarks.md);
  with varlen attention kernels on a GPU it is the usual choice.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from tailorlm.data.record import Record
from tailorlm.errors import TailorError

IGNORE = -100


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans the model must learn to write."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    eos = tokenizer.eos_token or ""
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        if not full.startswith(prefix) or not full[len(prefix):].startswith(m["content"]):
            raise TailorError("the chat template does not render conversations prefix by prefix, so assistant "
                              "turns cannot be located for loss masking")
        end = len(prefix) + len(m["content"])
        if eos and full.startswith(eos, end):
            end += len(eos)  # learn to stop: the end-of-turn token is part of the answer
        spans.append((len(prefix), end))
    return full, spans


def encode_chat(tokenizer, messages: list[dict]) -> dict:
    """input_ids and labels for one conversation; labels are -100 outside assistant turns."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for token, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
        inside = any(s <= start and end <= e and end > start for s, e in spans)
        labels.append(token if inside else IGNORE)
    return {"input_ids": enc["input_ids"], "labels": labels}


def encode_text(tokenizer, text: str) -> list[int]:
    """A document's tokens followed by EOS, for continued pre-training."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def pack_blocks(token_lists: list[list[int]], block: int) -> list[dict]:
    """Concatenate documents and cut into blocks of `block` tokens (the tail is kept, shorter)."""
    stream = [t for ids in token_lists for t in ids]
    return [{"input_ids": stream[i : i + block], "labels": stream[i : i + block]} for i in range(0, len(stream), block)]


def fit_length(examples: list[dict], max_len: int, policy: str) -> tuple[list[dict], dict]:
    """Apply the overlength policy: `truncate` cuts, `reject` drops; both are counted."""
    kept, truncated, rejected = [], 0, 0
    for ex in examples:
        if len(ex["input_ids"]) <= max_len:
            kept.append(ex)
        elif policy == "truncate":
            truncated += 1
            kept.append({k: v[:max_len] for k, v in ex.items()})
        else:
            rejected += 1
    kept = [ex for ex in kept if any(label != IGNORE for label in ex["labels"][1:])]
    return kept, {"truncated": truncated, "rejected": rejected, "no_supervised_tokens": len(examples) - rejected - len(kept)}


@dataclass
class PackedCollator:
    """Concatenate a batch into one row; position ids restart per sequence (padding-free)."""

    def __call__(self, features: list[dict]) -> dict:
        import torch

        ids, labels, positions = [], [], []
        for f in features:
            n = len(f["input_ids"])
            ids += f["input_ids"]
            # The first token of a sequence must not be predicted from the previous sequence.
            labels += [IGNORE] + list(f["labels"][1:])
            positions += list(range(n))
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([positions])}


MIN_SHARED_PREFIX = 4  # below this, sharing saves less than transformers' separate prefix pass costs


def shared_prefix(features: list[dict]) -> int:
    """Length of the token prefix all `features` share, stopping before the first labelled token of
    any of them (the token at the cut must not need a prediction from inside the prefix)."""
    if len(features) < 2:
        return 0
    limit = min(next((j for j, lab in enumerate(f["labels"]) if lab != IGNORE), len(f["labels"])) - 1
                for f in features)
    first = features[0]["input_ids"]
    n = 0
    while n < limit and all(f["input_ids"][n] == first[n] for f in features):
        n += 1
    return n if n >= MIN_SHARED_PREFIX else 0


@dataclass
class PaddedCollator:
    """Right-padded batches with an attention mask; with `share_prefix`, the shared unlabelled prefix
    comes out once as `prefix_ids` (see the module docstring)."""

    pad_id: int
    share_prefix: bool = False

    def __call__(self, features: list[dict]) -> dict:
        import torch

        cut = shared_prefix(features) if self.share_prefix else 0
        if cut:
            prefix = features[0]["input_ids"][:cut]
            features = [{"input_ids": f["input_ids"][cut:], "labels": f["labels"][cut:]} for f in features]
        longest = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), longest), self.pad_id)
        labels = torch.full((len(features), longest), IGNORE)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if cut:
            batch["prefix_ids"] = torch.tensor([prefix])
        return batch


def split_rows(batch: dict, max_tokens: int | None) -> list[dict]:
    """A padded batch as consecutive groups of rows of at most `max_tokens` (rows × padded length)
    each, every group trimmed to its own longest row and given the shared prefix. Rows arrive grouped
    by length, so the groups are near-uniform; one row is never split."""
    rows, length = batch["input_ids"].shape
    if not max_tokens or "attention_mask" not in batch or rows * length <= max_tokens:
        return [batch]
    per = max(1, max_tokens // length)
    groups = []
    for start in range(0, rows, per):
        part = {k: v[start : start + per] for k, v in batch.items() if k != "prefix_ids"}
        longest = int(part["attention_mask"].sum(1).max())
        part = {k: v[:, :longest] for k, v in part.items()}
        if "prefix_ids" in batch:
            part["prefix_ids"] = batch["prefix_ids"]
        groups.append(part)
    return groups


def own_outputs_warning(records: Iterable[Record], models: set[str]) -> str | None:
    """A warning when synthetic training records (`tailor data synthesize`) were written by one of
    `models` (the base being trained), or None.

    >>> own_outputs_warning([Record("a", "chat", {}, {"synthetic": True, "teacher": "m"})], {"m"})[:32]
    '1 of 1 training records were wri'
    """
    from tailorlm.data.steps.mix import is_synthetic

    records = list(records)
    mine = [r for r in records if is_synthetic(r) and r.meta.get("teacher") in models]
    if not mine:
        return None
    teacher = mine[0].meta["teacher"]
    return (f"{len(mine)} of {len(records)} training records were written by {teacher}, the model being trained: "
            "training a model on its own outputs reinforces its mistakes and narrows its outputs (model collapse, "
            "Shumailov et al. 2024). Prefer a stronger teacher (models.teacher)")
