"""The `normalize` step: Unicode NFC and whitespace, so that equal texts compare equal.

Line structure is kept (code blocks and Markdown depend on it): trailing spaces go, runs of
blank lines shrink to one, invisible characters (zero-width, BOM, stray control codes) go.
HTML boilerplate is stripped earlier, by the document reader.
"""

import re
import unicodedata

from pydantic import Field

from tailorlm.data.record import Record
from tailorlm.data.steps.base import Mapper, StepParams

_INVISIBLE = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANKS = re.compile(r"\n{3,}")


def normalize_text(text: str, form: str = "NFC") -> str:
    text = unicodedata.normalize(form, text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _INVISIBLE.sub("", text).replace("\u00a0", " ")
    return _BLANKS.sub("\n\n", _TRAILING.sub("\n", text)).strip()


class Normalize(Mapper):
    name = "normalize"

    class Params(StepParams):
        form: str = Field("NFC", pattern="^(NFC|NFKC)$", description="Unicode normal form: NFC keeps compatibility characters, NFKC folds them.")

    def map(self, record: Record) -> Record:
        out = record.map_texts(lambda t: normalize_text(t, self.p.form))
        if out.content != record.content:
            self.stats["changed"] += 1
        return out
