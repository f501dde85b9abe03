"""The `quality` and `perplexity` steps: exact survivors and reasons on crafted records, the shipped
example data passing untouched, the fast n-gram path agreeing with a brute-force Gopher count, and
the perplexity cut-off with an injected scorer."""

import json
import math
import random
import re

import pytest
from pydantic import ValidationError

from tailorlm.data.steps.quality import PerplexityFilter, Quality, _repeated_chars, lm_scorer
from tailorlm.quickstart import example_dir
from tests.helpers import chat, run_step, text

SUPPORT = example_dir("support")
# A real paragraph from the shipped docs: what the filter must never drop.
PARAGRAPH = (SUPPORT / "docs/billing-faq.md").read_text().split("\n\n")[3]
WORDS = re.sub(r"[^\w\s]", "", PARAGRAPH).split()




def _lines(words_per_line, end=""):
    return "\n".join(" ".join(WORDS[i : i + words_per_line]) + end for i in range(0, len(WORDS), words_per_line))


def test_the_paragraph_is_real_prose():
    assert PARAGRAPH.startswith("Invoices are issued") and len(WORDS) > 50


def test_exact_survivors_and_reasons():
    sentences = [" ".join(WORDS[i : i + 10]) + "." for i in range(0, 50, 10)]
    records = [
        chat("short_chat", "My invoice is wrong, I was charged twice", "billing"),
        chat("hi", "hi", "ok"),
        text("spam", "buy now " * 200),
        text("real", PARAGRAPH),
        text("hashtags", " ".join(f"#deal{i}" for i in range(20))),
        text("numbers", " ".join(str(123456 + i) for i in range(20))),
        text("letters", "a b c d e f g h i j k"),
        chat("letters_chat", "a b c d e f g h i j k", "spam"),
        chat("chat_spam", "I need help " * 30, "billing"),
        text("no_punct", _lines(7)),
        text("short_lines", _lines(2, end=".")),
        text("dup_lines", "\n".join(sentences * 3)),
        text("ellipses", "\n".join(f"{' '.join(WORDS[i : i + 6])}..." for i in range(0, 42, 6))),
    ]
    kept, dropped = run_step(Quality(), records)
    assert kept == ["short_chat", "real", "letters_chat"]
    assert dropped == {
        "hi": "too_short",
        "spam": "top_2gram_fraction",
        "hashtags": "symbol_ratio",
        "numbers": "non_alpha_words",
        "letters": "mean_word_length",
        "chat_spam": "top_2gram_fraction",  # repetition applies to every kind
        "no_punct": "line_punct_ratio",
        "short_lines": "short_line_ratio",
        "dup_lines": "dup_line_fraction",
        "ellipses": "symbol_ratio",
    }


def test_every_shipped_ticket_and_plain_text_document_passes():
    tickets = [chat(t["id"], t["messages"][0]["content"], t["messages"][1]["content"])
               for t in map(json.loads, (SUPPORT / "tickets.jsonl").read_text().splitlines())]
    # HTML goes through the docs reader first; Markdown, reST and text are read as written.
    docs = [text(p.name, p.read_text()) for p in sorted((SUPPORT / "docs").iterdir()) if p.suffix != ".html"]
    kept, dropped = run_step(Quality(), tickets + docs)
    assert dropped == {} and len(kept) == 400 + 17


def test_params_switch_rules_and_kinds():
    letters = chat("letters_chat", "a b c d e f g h i j k", "spam")
    assert run_step(Quality(document_checks_for=["text", "chat"]), [letters])[1] == {"letters_chat": "mean_word_length"}
    assert run_step(Quality(min_line_punct_ratio=None), [text("no_punct", _lines(7))])[0] == ["no_punct"]
    assert run_step(Quality(max_words=20), [text("real", PARAGRAPH)])[1] == {"real": "too_long"}
    # Below repetition_min_words nothing is judged as repetitive.
    assert run_step(Quality(repetition_min_words=500), [chat("c", "I need help " * 30, "billing")])[0] == ["c"]
    step = Quality(max_top_ngram_fraction={})
    assert run_step(step, [text("spam", "buy now " * 200)])[1] == {"spam": "dup_5gram_fraction"}
    assert step.summary()["dropped"] == {"dup_5gram_fraction": 1}


def test_unknown_or_bad_params_are_errors():
    with pytest.raises(ValidationError):
        Quality(min_word=3)
    with pytest.raises(ValidationError):
        Quality(document_checks_for=["web"])
    with pytest.raises(ValidationError):
        PerplexityFilter(drop_fraction=1.5)


def _gopher_repeated_chars(words, n):
    """Gopher's duplicate n-gram count, written plainly as in datatrove's reference."""
    seen, repeated, i = set(), 0, 0
    while i < len(words) - n + 1:
        gram = " ".join(words[i : i + n])
        if gram in seen:
            repeated += sum(len(w) for w in words[i : i + n])
            i += n
        else:
            seen.add(gram)
            i += 1
    return repeated


def test_fast_ngram_path_agrees_with_brute_force():
    rng = random.Random(0)
    only_dup = dict(max_top_ngram_fraction={}, max_dup_line_fraction=None, max_dup_para_fraction=None,
                    max_dup_line_char_fraction=None, max_dup_para_char_fraction=None, document_checks_for=[])
    step = Quality(**only_dup)
    limits = sorted(step.p.max_dup_ngram_fraction.items())
    for trial in range(200):
        vocab = WORDS[: rng.choice([3, 8, 30, 60])]
        words = [w.lower() for w in rng.choices(vocab, k=rng.randint(50, 300))]
        if trial % 3 == 0:  # splice in a long repeated run, the shape that spam has
            run = words[:12]
            words = words + run * rng.randint(1, 4)
        ends = [0]
        for w in words:
            ends.append(ends[-1] + len(w))
        for n, _ in limits:
            assert _repeated_chars(words, n, ends) == _gopher_repeated_chars(words, n)
        total = ends[-1]
        expected = next((f"dup_{n}gram_fraction" for n, lim in limits if _gopher_repeated_chars(words, n) / total > lim), None)
        verdict = step.keep(text("t", " ".join(words)))
        assert (verdict if verdict is not True else None) == ((False, expected) if expected else None)


def _scores(table):
    calls = []

    def score(texts):
        calls.append(len(texts))
        return [table[t] for t in texts]

    return score, calls


def test_perplexity_drops_exactly_the_worst_fraction():
    table = {"a": 1.0, "b": 9.0, "c": 3.0, "d": 9.0, "e": 2.0, "f": 7.0, "g": 0.5, "h": 4.0, "i": 5.0, "j": 6.0}
    score, calls = _scores(table)
    step = PerplexityFilter(score=score, drop_fraction=0.3)
    records = [text(t, t) for t in table]
    kept, dropped = run_step(step, records)
    # The three highest: b and d tie at 9.0, then f at 7.0.
    assert kept == ["a", "c", "e", "g", "h", "i", "j"]
    assert dropped == {"b": "high_perplexity", "d": "high_perplexity", "f": "high_perplexity"}
    assert dict(step.dropped) == {"high_perplexity": 3} and calls == [10]
    # Every record, kept or dropped, carries its score (the step returns spooled copies, not its input).
    scored = []
    again = PerplexityFilter(score=score, drop_fraction=0.3)
    again.sink = lambda r, _step, _reason: scored.append(r)
    scored += list(again(text(t, t) for t in table))
    assert sorted((r.id, r.meta["perplexity_score"]) for r in scored) == sorted(table.items())


def test_perplexity_ties_drop_the_later_record_and_off_means_no_scoring():
    score, _ = _scores({"a": 5.0, "b": 5.0, "c": 5.0, "d": 1.0})
    kept, dropped = run_step(PerplexityFilter(score=score, drop_fraction=0.5), [text(t, t) for t in "abcd"])
    assert kept == ["a", "d"] and set(dropped) == {"b", "c"}

    def never(texts):
        raise AssertionError("scored although the step is off")

    assert run_step(PerplexityFilter(score=never), [text("x", "x")])[0] == ["x"]


def test_default_scorer_is_mean_nll_and_padding_does_not_change_it(tiny_generator, monkeypatch):
    from tailorlm.models.local import LocalGenerator

    monkeypatch.setattr(LocalGenerator, "load", classmethod(lambda cls, model: tiny_generator))
    texts = ["Invoices are issued on your subscription anniversary date.", "hi", PARAGRAPH]
    batched = lm_scorer("tiny", batch_size=8)(texts)
    one_by_one = lm_scorer("tiny", batch_size=1)(texts)
    # A random model over a ~49k vocabulary is close to uniform: NLL near log(vocab).
    assert all(math.isfinite(s) and 0 < s < 2 * math.log(len(tiny_generator.tokenizer)) for s in batched)
    assert batched == pytest.approx(one_by_one, abs=1e-4)
