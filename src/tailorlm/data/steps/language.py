"""The `language` step of `tailor data prepare`: keep records written in the languages you train on.

Detection uses lingua (`pip install lingua-language-detector`), with a detector for the languages
in `keep` plus `candidates` only. lingua loads one model per language on first use, so a short list
starts and runs faster: about 0.6 s to load and 6,000 tickets/s for three languages, 1.1 s and
3,800/s for seven.

What is judged: for chat and eval records, the user turns, because the assistant's answer may be
a label ("billing") that says nothing about the language; for other kinds, `record.joined()`.
Texts shorter than `min_chars` are kept unjudged (language ID on three words is noise). A record
is dropped only when the detector is at least `min_confidence` sure of a language outside `keep`.

    >>> from tailorlm.data.record import Record
    >>> step = Language(keep=["en"])
    >>> text = "Hallo zusammen, seit dem Update bekommen wir ständig Dateien mit Konflikten im Namen."
    >>> list(step([Record("t1", "text", {"text": text})])), dict(step.dropped)
    ([], {'language:de': 1})
"""

from pydantic import Field, field_validator

from tailorlm.data.record import Record
from tailorlm.data.steps.base import Filter, StepParams
from tailorlm.errors import TailorError

# The first few thousand characters tell the language as well as the whole text, and keep long
# documents as cheap as tickets.
JUDGED_CHARS = 3000


class Language(Filter):
    """Drop records confidently detected as a language outside `keep`; tag the rest."""

    name = "language"

    class Params(StepParams):
        keep: list[str] = Field(["en"], min_length=1, description="ISO 639-1 codes of the languages to keep, e.g. [en, de].")
        min_confidence: float = Field(0.5, ge=0.0, le=1.0, description="Drop a record only if the detector gives a language outside `keep` at least this confidence; less sure records are kept and counted as `uncertain`.")
        min_chars: int = Field(40, ge=0, description="Texts with fewer characters are kept unjudged and counted as `too_short_to_judge`.")
        candidates: list[str] = Field(["en", "de", "es", "fr", "it", "pt", "nl"], description="ISO 639-1 codes the detector chooses among, besides `keep`. A language missing here is reported as its nearest candidate; each one adds load time and per-text cost.")

        @field_validator("keep", "candidates")
        @classmethod
        def _iso_codes(cls, codes: list[str]) -> list[str]:
            lingua = _lingua()
            codes = [c.strip().lower() for c in codes]
            for code in codes:
                try:
                    lingua.IsoCode639_1.from_str(code)
                except ValueError:
                    raise ValueError(f"{code!r} is not an ISO 639-1 language code lingua knows (e.g. en, de, es)") from None
            return codes

    def __init__(self, **params):
        super().__init__(**params)
        lingua = _lingua()
        codes = sorted(set(self.p.keep) | set(self.p.candidates))
        languages = [lingua.Language.from_iso_code_639_1(lingua.IsoCode639_1.from_str(c)) for c in codes]
        if len(languages) == 1:  # lingua needs two to choose between; a lone language has nothing to reject
            languages.append(lingua.Language.ENGLISH if codes[0] != "en" else lingua.Language.GERMAN)
        # Building is cheap; lingua loads each language's model lazily on the first detection.
        self.detector = lingua.LanguageDetectorBuilder.from_languages(*languages).build()
        self._keep = set(self.p.keep)

    def keep(self, record: Record) -> bool | tuple[bool, str]:
        text = judged_text(record).strip()[:JUDGED_CHARS]
        if len(text) < self.p.min_chars:
            self.stats["too_short_to_judge"] += 1
            return True
        best = self.detector.compute_language_confidence_values(text)[0]  # sorted, most likely first
        code = best.language.iso_code_639_1.name.lower()
        record.meta["language"] = code
        record.meta["language_confidence"] = round(best.value, 3)
        self.stats[f"lang:{code}"] += 1
        if code in self._keep:
            return True
        if best.value < self.p.min_confidence:
            self.stats["uncertain"] += 1
            return True
        return False, f"language:{code}"


def judged_text(record: Record) -> str:
    """The text whose language counts: the user turns of a chat or eval record, else everything."""
    messages = record.content.get("messages") or record.content.get("input")
    if isinstance(messages, list):
        user = [m["content"] for m in messages if isinstance(m, dict) and m.get("role") == "user"
                and isinstance(m.get("content"), str)]
        if user:
            return "\n".join(user)
    return record.joined()


def _lingua():
    try:
        import lingua
    except ImportError:
        raise TailorError("the language step needs lingua: pip install lingua-language-detector") from None
    return lingua
