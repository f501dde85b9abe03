"""Train a byte-level BPE tokenizer for small pre-training (`tailor train pretrain`).

Fine-tuning rungs reuse their base model's tokenizer; only a model pre-trained from scratch needs
its own. This one follows SmolLM2's conventions so everything downstream (chat formatting, stop
tokens, serving) treats it like the embedded generator:
- ids 0, 1, 2 are `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`;
- a ChatML chat template, `<|im_start|>{role}\\n{content}<|im_end|>\\n`;
- `<|im_end|>` is eos, so generation stops at the end of an assistant turn.
`<|endoftext|>` is bos, pad and unk and separates documents when packing pre-training text.
"""

from collections.abc import Iterable
from pathlib import Path

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]

# SmolLM2's ChatML format without its default system prompt, which names SmolLM and Hugging Face.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 8000, out_dir: Path | None = None):
    """Train a byte-level BPE tokenizer on `texts`; saved with `save_pretrained` to `out_dir` if given.

    The vocabulary holds the 256 byte symbols, the 3 special tokens and up to
    `vocab_size - 259` merges (fewer when the corpus runs out of pairs worth merging). Every string
    round-trips: decode(encode(x)) == x. The same texts in the same order give the same tokenizer.

    >>> tok = train_bpe_tokenizer(["hello world"] * 50, vocab_size=300)
    >>> tok.decode(tok("hello wörld")["input_ids"])
    'hello wörld'
    >>> tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
    ...                         add_generation_prompt=True)
    '<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    floor = 256 + len(SPECIAL_TOKENS)
    if vocab_size < floor:
        raise ValueError(f"vocab_size must be at least {floor} (256 bytes + special tokens), got {vocab_size}")

    tokenizer = Tokenizer(models.BPE())
    # No normalizer: NFC/NFKC would rewrite the user's text and break exact round-trips.
    # add_prefix_space=False keeps the first word of a text encoded as written (GPT-2/SmolLM2 style).
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,  # first, so they get ids 0, 1, 2
        # all 256 byte symbols up front, so text never seen in training still encodes (no unk)
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,  # a pair seen once is noise, not a merge worth a vocabulary slot
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=ENDOFTEXT,
        eos_token=IM_END,
        # pad differs from eos: collators mask pad labels, and a pad equal to eos would also mask
        # every real end-of-turn, so the model would never learn to stop.
        pad_token=ENDOFTEXT,
        unk_token=ENDOFTEXT,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        # the default clean-up joins " ." and " n't", which breaks exact round-trips of code and prose
        clean_up_tokenization_spaces=False,
    )
    if out_dir is not None:
        wrapped.save_pretrained(Path(out_dir))
    return wrapped
