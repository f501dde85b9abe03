"""The `toxicity` step of `tailor data prepare`: drop abusive records, by word list and optionally
by a classifier you plug in.

Word list: `words`, plus one word a line from `words_file`; with neither, the short built-in
`DEFAULT_WORDS` (profanity and slurs; bring a real list, e.g. LDNOOBW, for serious use). Matching
is whole-word and case-insensitive, and it sees through two simple disguises:
- repeated letters collapse, in the text and in the list alike: "fuuuck" and "FUCK" both match "fuck";
- `*` inside a word stands for one or more letters: "f**k", "f*ck" and "s*it" match listed words.
The score is the fraction of the record's words that are listed; a record is dropped when it is
above `threshold` (0 drops on any listed word, as C4 did), reason `toxicity:wordlist`.

Classifier: `classifier: "module:function"` names a callable `(text) -> float` in [0, 1], e.g. a
wrapper around a Detoxify or Hugging Face model; records scoring at least `classifier_threshold`
are dropped, reason `toxicity:classifier`. It only sees records the word list kept.

    >>> from tailorlm.data.record import Record
    >>> step = Toxicity(words=["darn"])
    >>> [r.id for r in step([Record("a", "text", {"text": "Daaarn it"}), Record("b", "text", {"text": "Fine"})])]
    ['b']
"""

import importlib
import re
from pathlib import Path
from typing import Callable

from pydantic import Field

from tailorlm.data.record import Record
from tailorlm.data.steps.base import Filter, StepParams
from tailorlm.errors import ConfigError

# Clearly abusive English only: a record hit by these is rarely worth training on. Kept short on
# purpose; it is a floor, not a moderation policy.
DEFAULT_WORDS = (
    "fuck", "fucking", "fucker", "motherfucker", "shit", "bullshit", "bitch", "bastard", "asshole",
    "dickhead", "cunt", "twat", "wanker", "prick", "slut", "whore", "retard", "faggot",
)

_REPEATS = re.compile(r"(.)\1+")  # runs of one character: "fuuuck" -> "fuck", "f**k" -> "f*k"
_WORD = re.compile(r"\w+(?:\*+\w+)*")  # a word, possibly with inner asterisks; edge ones are markup


def normalise(text: str) -> str:
    """Lower case with runs of a repeated character collapsed: the form both sides are compared in."""
    return _REPEATS.sub(r"\1", text.lower())


class Toxicity(Filter):
    """Drop records with listed words (above a threshold) or a high classifier score."""

    name = "toxicity"

    class Params(StepParams):
        words: list[str] | None = Field(None, description="Words to drop records for, one word each. Null means the built-in list, unless `words_file` is given; [] means no word list.")
        words_file: str | None = Field(None, description="A file of words, one a line (blank lines and '#' comments skipped), added to `words`; relative paths are resolved against the current directory.")
        threshold: float = Field(0.0, ge=0.0, le=1.0, description="Drop a record when listed words are more than this fraction of its words; 0 drops on any listed word.")
        classifier: str | None = Field(None, pattern=r"^[\w.]+:\w+$", description="'module:function' of a callable (text) -> toxicity score in [0, 1]; null for none.")
        classifier_threshold: float = Field(0.5, ge=0.0, le=1.0, description="Drop a record when the classifier scores it at least this.")

    def __init__(self, **params):
        super().__init__(**params)
        self.words = _word_set(self.p.words, self.p.words_file)
        self._listed = sorted(self.words)  # a stable order to try disguised words against
        self.classify = _import(self.p.classifier) if self.p.classifier else None

    def keep(self, record: Record) -> bool | tuple[bool, str]:
        text = record.joined()
        tokens = _WORD.findall(normalise(text))
        hits = self.count(tokens)
        score = hits / len(tokens) if tokens else 0.0
        record.meta["toxicity"] = round(score, 4)
        if hits:
            self.stats["listed_words_found"] += hits
        if hits and score > self.p.threshold:
            return False, "toxicity:wordlist"
        if self.classify is not None:
            value = float(self.classify(text))
            record.meta["toxicity_classifier"] = round(value, 4)
            if value >= self.p.classifier_threshold:
                return False, "toxicity:classifier"
        return True

    def count(self, tokens: list[str]) -> int:
        """How many of `tokens` (already normalised) are listed words, disguised or not."""
        # Set intersection runs in C; the per-token work happens only for words that are listed.
        hits = sum(tokens.count(word) for word in self.words.intersection(tokens))
        # A disguised word becomes a pattern of its own; they are rare, so this loop mostly idles.
        for token in (t for t in tokens if "*" in t):
            pattern = re.compile(r"\w+".join(map(re.escape, token.split("*"))))
            hits += any(pattern.fullmatch(word) for word in self._listed)
        return hits


def _word_set(words: list[str] | None, words_file: str | None) -> set[str]:
    listed = list(DEFAULT_WORDS if words is None and words_file is None else words or [])
    if words_file:
        path = Path(words_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ConfigError(f"toxicity: cannot read words_file {str(path)!r}: {e.strerror or e}") from None
        listed += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    out = set()
    for word in listed:
        norm = normalise(word.strip())
        if not re.fullmatch(r"\w+", norm):
            raise ConfigError(f"toxicity: {word!r} is not one word; list single words")
        out.add(norm)
    return out


def _import(path: str) -> Callable[[str], float]:
    module, _, attr = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"toxicity: cannot import classifier {path!r}: {e}") from None
    if not callable(fn):
        raise ConfigError(f"toxicity: classifier {path!r} is not callable")
    return fn
