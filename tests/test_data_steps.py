"""Smaller steps: normalize, validate, mix and split, on hand-made records with exact expectations."""

import pytest
from pydantic import ValidationError

from tailorlm.data.record import Record
from tailorlm.data.steps.mix import Mix
from tailorlm.data.steps.normalize import Normalize, normalize_text
from tailorlm.data.steps.split import Split
from tailorlm.data.steps.validate import Validate, chat_problem


def _run(step, records):
    dropped = []
    step.sink = lambda r, name, reason: dropped.append((r.id, reason))
    kept = list(step(records))
    return kept, dropped


def test_normalize_nfc_whitespace_and_invisibles():
    decomposed = "Cafe\u0301 \u200bmenu  \t\n\n\n\nnext line   \r\nend\u00a0here"
    assert normalize_text(decomposed) == "Caf\u00e9 menu\n\nnext line\nend here"
    r = Record("1", "chat", {"messages": [{"role": "user", "content": " Cafe\u0301 "}, {"role": "assistant", "content": "ok"}]})
    kept, _ = _run(Normalize(), [r])
    assert kept[0].content["messages"][0]["content"] == "Caf\u00e9"
    assert r.content["messages"][0]["content"] == " Cafe\u0301 "  # the input record is not modified


def test_validate_counts_tokens_and_checks_turns():
    ok = Record("ok", "chat", {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                                            {"role": "assistant", "content": "a", "tool_calls": [{"id": "1"}]},
                                            {"role": "tool", "content": "r"}, {"role": "assistant", "content": "done"}]})
    long = Record("long", "chat", {"messages": [{"role": "user", "content": "a b c d e f"}, {"role": "assistant", "content": "x"}]})
    same = Record("same", "preference", {"prompt": "p", "chosen": "a", "rejected": " a "})
    step = Validate(count_tokens=lambda r: len(r.joined().split()), context=5)
    kept, dropped = _run(step, [ok, long, same])
    assert [r.id for r in kept] == ["ok"] and kept[0].meta["tokens"] == 5
    assert dropped == [("long", "too_many_tokens"), ("same", "chosen_equals_rejected")]
    assert Validate(max_tokens=100, context=5).limit == 100
    assert chat_problem([{"role": "assistant", "content": "hi"}]) == "first_turn_not_user"
    assert chat_problem([{"role": "user", "content": "q"}], require_assistant_last=False) is None


def _group(source, n):
    return [Record(f"{source}{i}", "text", {"text": f"{source} {i}"}, {"source": source}) for i in range(n)]


def test_mix_downsamples_to_the_ratios_and_accounts_for_everything():
    records = _group("docs", 50) + _group("tickets", 30) + _group("other", 5)
    step = Mix(ratios={"docs": 0.5, "tickets": 0.5}, seed=1)
    kept, dropped = _run(step, records)
    by_source = {s: sum(r.meta["source"] == s for r in kept) for s in ("docs", "tickets")}
    assert by_source == {"docs": 30, "tickets": 30}
    assert sorted(reason for _, reason in dropped) == ["downsampled"] * 20 + ["not_in_mix"] * 5
    assert len(kept) + len(dropped) == len(records)
    assert [r.id for r in _run(Mix(ratios={"docs": 0.5, "tickets": 0.5}, seed=1), records)[0]] == [r.id for r in kept]


def test_mix_upsamples_with_marked_copies():
    records = _group("docs", 10) + _group("tickets", 2)
    step = Mix(ratios={"docs": 1, "tickets": 1}, total=20, seed=0)
    kept, dropped = _run(step, records)
    copies = [r for r in kept if "upsampled_from" in r.meta]
    assert len(kept) == 20 and len(copies) == 8 and step.stats["upsampled"] == 8
    assert all(r.id.startswith(r.meta["upsampled_from"] + "#") for r in copies)
    assert len({r.id for r in kept}) == 20  # copies get distinct ids


def test_split_is_stratified_and_seeded():
    records = [Record(str(i), "chat", {"messages": []}, {"label": "a" if i < 60 else "b"}) for i in range(100)]
    kept, _ = _run(Split(seed=3), records)
    counts = {(lab, s): 0 for lab in "ab" for s in ("train", "validation", "test")}
    for r in kept:
        counts[(r.meta["label"], r.meta["split"])] += 1
    assert counts == {("a", "train"): 48, ("a", "validation"): 6, ("a", "test"): 6,
                      ("b", "train"): 32, ("b", "validation"): 4, ("b", "test"): 4}
    first = [r.meta["split"] for r in kept]
    again = [r.meta["split"] for r in _run(Split(seed=3), records)[0]]
    other = [r.meta["split"] for r in _run(Split(seed=4), records)[0]]
    assert again == first and other != again


def test_step_params_are_validated():
    with pytest.raises(ValidationError):
        Split(train=0.5)
    with pytest.raises(ValidationError):
        Mix(ratios={"a": -1})
    with pytest.raises(ValidationError):
        Normalize(colour="blue")
