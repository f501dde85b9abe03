"""The `language` and `toxicity` steps: the planted German and Spanish tickets go and every English
one stays; word lists match whole words through simple disguises; a classifier plugs in by import
path; bad parameters are errors."""

import json

import pytest
from pydantic import ValidationError

from tailorlm.data.record import Record
from tailorlm.data.steps.language import Language
from tailorlm.data.steps.toxicity import DEFAULT_WORDS, Toxicity
from tailorlm.errors import ConfigError
from tailorlm.quickstart import example_dir
from tests.helpers import chat, run_step, text

SUPPORT = example_dir("support")
TICKETS = [Record(t["id"], "chat", {"messages": t["messages"]})
           for t in map(json.loads, (SUPPORT / "tickets.jsonl").read_text().splitlines())]
GERMAN = "Hallo zusammen, seit dem Update bekommen wir ständig Dateien mit Konflikten im Namen. Welche Version ist richtig?"


def my_scorer(text: str) -> float:
    """A stand-in toxicity classifier, imported by path as a real one would be."""
    return 0.9 if "idiots" in text.lower() else 0.1




def test_language_drops_the_planted_german_and_spanish_tickets_only():
    step = Language()
    kept, dropped = run_step(step, TICKETS)
    assert dropped == {"T0169": "language:es", "T0316": "language:de"}
    assert kept == [t.id for t in TICKETS if t.id not in dropped]
    assert dict(step.dropped) == {"language:de": 1, "language:es": 1}
    assert step.stats == {"lang:en": 398, "lang:de": 1, "lang:es": 1}
    assert TICKETS[0].meta["language"] == "en"


def test_language_judges_user_turns_and_leaves_short_texts_alone():
    step = Language(keep=["en"])
    records = [
        chat("de_user", GERMAN, "sync_conflict"),  # the English-looking label does not save it
        chat("en_user", "The desktop agent keeps creating conflict copies of our spreadsheets.", GERMAN),
        text("hola", "Hola, gracias"),
    ]
    kept, dropped = run_step(step, records)
    assert kept == ["en_user", "hola"] and dropped == {"de_user": "language:de"}
    assert step.stats["too_short_to_judge"] == 1 and "language" not in records[2].meta
    assert run_step(Language(keep=["en", "de"]), records)[1] == {}


def test_language_params_are_checked():
    with pytest.raises(ValidationError):
        Language(keep=["english"])
    with pytest.raises(ValidationError):
        Language(langs=["en"])
    with pytest.raises(ValidationError):
        Language(keep=[])


def test_custom_word_list_matches_whole_words_through_disguises():
    step = Toxicity(words=["refund"])
    records = [
        text("plain", "I want a refund now"),
        text("shouted", "I want a REEEFUND"),
        text("starred", "give me my r*fund"),
        text("longer_word", "It was refunded yesterday"),
        text("clean", "Where is my invoice?"),
    ]
    kept, dropped = run_step(step, records)
    assert kept == ["longer_word", "clean"]
    assert dropped == {"plain": "toxicity:wordlist", "shouted": "toxicity:wordlist", "starred": "toxicity:wordlist"}
    assert records[0].meta["toxicity"] == 0.2 and records[4].meta["toxicity"] == 0.0
    assert step.stats["listed_words_found"] == 3


def test_default_list_catches_profanity_and_spares_every_ticket():
    step = Toxicity()
    # Stored normalised, as the text will be: repeated letters collapsed.
    assert len(step.words) == len(DEFAULT_WORDS) and {"ashole", "bulshit", "fuck"} <= step.words
    angry = [text("a", "This is f**king bullshit"), text("b", "Fuuuck this"), text("c", "Scunthorpe **Owner**")]
    kept, dropped = run_step(step, angry + TICKETS)
    assert dropped == {"a": "toxicity:wordlist", "b": "toxicity:wordlist"} and len(kept) == 401


def test_threshold_is_a_fraction_of_words():
    step = Toxicity(words=["darn"], threshold=0.2)
    ten = text("ten", "darn it the agent is slow again on all our laptops")  # 1 of 11 words
    three = text("three", "darn darn agent")  # 2 of 3
    assert run_step(step, [ten, three]) == (["ten"], {"three": "toxicity:wordlist"})


def test_words_file_is_read_relative_to_the_current_directory(tmp_path):
    (tmp_path / "words.txt").write_text("# our list\n\nrefund\n  chargeback \n")
    step = Toxicity(words_file="words.txt")
    assert step.words == {"refund", "chargeback"}  # the file replaces the built-in list
    kept, dropped = run_step(step, [text("a", "A chargeback was filed"), text("b", "fuck")])
    assert kept == ["b"] and dropped == {"a": "toxicity:wordlist"}
    assert Toxicity(words=["darn"], words_file="words.txt").words == {"darn", "refund", "chargeback"}
    with pytest.raises(ConfigError):
        Toxicity(words_file="missing.txt")
    with pytest.raises(ConfigError):
        Toxicity(words=["two words"])


def test_classifier_plugs_in_by_import_path():
    step = Toxicity(words=[], classifier="tests.test_language_toxicity:my_scorer")
    records = [text("rude", "Your support staff are idiots"), text("calm", "Thanks for the quick fix")]
    kept, dropped = run_step(step, records)
    assert kept == ["calm"] and dropped == {"rude": "toxicity:classifier"}
    assert records[0].meta["toxicity_classifier"] == 0.9 and records[1].meta["toxicity_classifier"] == 0.1
    assert run_step(Toxicity(words=[], classifier="tests.test_language_toxicity:my_scorer", classifier_threshold=0.95),
                records)[1] == {}


def test_toxicity_params_are_checked():
    with pytest.raises(ValidationError):
        Toxicity(word_list=["x"])
    with pytest.raises(ValidationError):
        Toxicity(classifier="not a path")
    with pytest.raises(ConfigError):
        Toxicity(classifier="tests.test_language_toxicity:no_such_function")
