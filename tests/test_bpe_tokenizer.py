"""The byte-level BPE tokenizer trained for small pre-training, on the shipped support docs."""

from pathlib import Path

import pytest

import tailorlm
from tailorlm.train.tokenizer import train_bpe_tokenizer

DOCS = Path(tailorlm.__file__).parent / "examples" / "support" / "docs"


@pytest.fixture(scope="module")
def texts():
    return [p.read_text(encoding="utf-8") for p in sorted(DOCS.iterdir()) if p.is_file()]


@pytest.fixture(scope="module")
def tok(texts):
    return train_bpe_tokenizer(texts, vocab_size=1000)


@pytest.mark.parametrize("text", [
    "How do I restore a deleted project?",
    "héllo wörld — naïve café, 日本語のテキスト, emoji 🎉👍🏽",
    "def f(x):\n    return {'a': [x ** 2, None]}  # tabs\tand  double  spaces\n",
    "  leading and trailing spaces  \n\n",
    "don't split . this , please ?",
    "<|im_start|>user\nhi<|im_end|>\n",
    "",
])
def test_decode_encode_round_trips(tok, text):
    assert tok.decode(tok(text)["input_ids"]) == text


def test_vocab_size_is_respected(tok):
    # the docs have enough text to fill all 1000 slots
    assert len(tok) == 1000
    assert max(tok.get_vocab().values()) == 999


def test_special_tokens_have_fixed_ids_and_stay_single_tokens(tok):
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|endoftext|>", "<|im_end|>", "<|endoftext|>", "<|endoftext|>")
    assert (tok.eos_token_id, tok.pad_token_id) == (2, 0)
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert len(tok(special)["input_ids"]) == 1
    assert tok("a<|im_end|>b")["input_ids"][1] == 2


def test_learned_merges_compress_the_training_domain(tok):
    text = "Restore a project from a backup in the admin console."
    assert len(tok(text)["input_ids"]) < len(text.encode()) / 2


def test_chat_template_renders_chatml(tok):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How do I reset SSO?"},
        {"role": "assistant", "content": "Open the admin console."},
        {"role": "user", "content": "Thanks"},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHow do I reset SSO?<|im_end|>\n"
        "<|im_start|>assistant\nOpen the admin console.<|im_end|>\n"
        "<|im_start|>user\nThanks<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = tok.apply_chat_template(messages[:2], tokenize=True)["input_ids"]
    assert ids[0] == 1 and ids.count(2) == 2


def test_training_is_deterministic(texts, tok):
    again = train_bpe_tokenizer(texts, vocab_size=1000)
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()


def test_save_and_reload_with_auto_tokenizer(texts, tmp_path):
    from transformers import AutoTokenizer

    tok = train_bpe_tokenizer(texts, vocab_size=1000, out_dir=tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    samples = ["héllo 🎉 world", "def g():\n    pass\n", "<|im_start|>user\nhi<|im_end|>\n"]
    for text in samples + texts[:3]:
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert (loaded.eos_token, loaded.pad_token, loaded.bos_token) == (tok.eos_token, tok.pad_token, tok.bos_token)
    messages = [{"role": "user", "content": "hi"}]
    assert loaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def test_too_small_vocab_is_rejected():
    with pytest.raises(ValueError, match="at least 259"):
        train_bpe_tokenizer(["abc"], vocab_size=100)
