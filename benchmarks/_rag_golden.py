"""Golden sets for `rag.py`: known-item retrieval over real man pages, and the shipped Keelbox example.

Man pages (nothing written by hand): every English page /usr/share/man/man[1-8]/*.gz is read with
`_corpus._read` (roff stripped crudely). A page joins the corpus when its NAME section parses as
"names - description" with a description of at least two words. The NAME section (heading and
its lines, up to the next all-capitals heading such as SYNOPSIS) is cut from the indexed text,
so the question does not sit verbatim at the top of the answer. Pages are taken from a seeded
shuffle; auto-generated gcloud pages (16.6k of the 19.8k pages, mostly alpha/beta/GA triplets
with one description) are capped at `gcloud_share` of the sample so that they do not crowd out
the rest.

A question is one page's description, e.g. "list directory contents". Its relevant documents
are every indexed page with the same description (case and spacing ignored): gcloud's alpha,
beta and GA pages, or `printf(1)` and `printf(1p)`-style twins, all count as found. Questions are
distinct descriptions, sampled with the same seed.

    docs, golden, about = man_golden(n_docs=220, n_queries=200, gcloud_share=0.25, seed=0)
"""

import random
import re
from pathlib import Path
from types import SimpleNamespace

from _corpus import MAN_ROOT, _read, candidate_paths

from tailorlm.data.record import Record

_HEADING = re.compile(r"^\s*[A-Z][A-Z0-9 ()/_,.-]*[A-Z)]\s*$")  # SYNOPSIS, DESCRIPTION, SEE ALSO ...


def split_name(text: str, min_words: int = 20) -> tuple[str, str, str] | None:
    """(text without its NAME section, names, description), or None when there is no usable NAME.

    >>> split_name("NAME\\nls - list directory contents\\nSYNOPSIS\\nls [OPTION]... [FILE]...", min_words=1)
    ('SYNOPSIS\\nls [OPTION]... [FILE]...', 'ls', 'list directory contents')
    """
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip() == "NAME"), None)
    if start is None:
        return None
    end = start + 1
    while end < len(lines) and not _HEADING.match(lines[end]):
        end += 1
    names, sep, desc = " ".join(x.strip() for x in lines[start + 1 : end] if x.strip()).partition(" - ")
    desc = " ".join(desc.split())
    body = "\n".join(lines[:start] + lines[end:]).strip()
    # a page whose whole body was the NAME section (no heading after it) has nothing left to find
    if not sep or len(desc.split()) < 2 or len(body.split()) < min_words:
        return None
    return body, names.strip(), desc


def man_golden(n_docs: int, n_queries: int, gcloud_share: float, seed: int) -> tuple[list[Record], list[dict], dict]:
    """(documents as text Records, questions [{id, question, relevant}], description of both)."""
    paths = [p for p in candidate_paths() if p.is_relative_to(MAN_ROOT)]
    random.Random(seed).shuffle(paths)
    cap = int(n_docs * gcloud_share)
    docs, descs, gcloud, read, unusable = [], {}, 0, 0, 0
    for path in paths:
        if len(docs) >= n_docs:
            break
        is_gcloud = path.name.startswith("gcloud")
        if is_gcloud and gcloud >= cap:
            continue
        read += 1
        text = _read(path)
        parsed = split_name(text) if text else None
        if parsed is None:
            unusable += 1
            continue
        body, names, desc = parsed
        gcloud += is_gcloud
        docs.append(Record(str(path), "text", {"text": body},
                           {"path": str(path), "source": "man", "format": "text", "title": names}))
        descs[str(path)] = desc
    by_desc: dict[str, set[str]] = {}
    for path, desc in descs.items():
        by_desc.setdefault(desc.lower(), set()).add(path)
    # one question per distinct description, in first-seen order, then a seeded sample
    first = {}
    for path, desc in descs.items():
        first.setdefault(desc.lower(), desc)
    keys = sorted(first)
    picked = random.Random(seed + 1).sample(keys, min(n_queries, len(keys)))
    golden = [{"id": f"man-{i}", "question": first[key], "relevant": by_desc[key]} for i, key in enumerate(picked)]
    about = {
        "corpus": "English man pages /usr/share/man/man[1-8]/*.gz, roff stripped crudely, NAME section removed",
        "documents": len(docs), "gcloud_pages": gcloud, "gcloud_cap": cap,
        "pages_read": read, "pages_without_usable_name": unusable, "man_pages_available": len(paths),
        "bytes": sum(len(d.content["text"].encode()) for d in docs), "seed": seed,
        "questions": len(golden),
        "questions_with_several_relevant": sum(len(q["relevant"]) > 1 for q in golden),
        "construction": "known-item: question = the page's NAME description (e.g. 'list directory contents'); "
                        "relevant = every indexed page with that description; NAME section cut from the indexed text; "
                        f"{len(golden)} distinct descriptions sampled with seed {seed + 1}",
    }
    return docs, golden, about


def keelbox_golden() -> tuple[list[Record], list[dict], dict]:
    """The shipped example project's documents and its 30 hand-written questions (`questions.jsonl`)."""
    import tailorlm
    from tailorlm.data.readers.docs import DocText, iter_documents, to_record
    from tailorlm.rag.evaluate import load_suite

    root = Path(tailorlm.__file__).parent / "examples" / "support"
    docs = [to_record(p, d, root, "docs") for p, d in iter_documents("docs", root) if isinstance(d, DocText)]
    # load_suite only needs the project's root: the suite is read exactly as `tailor rag eval` reads it
    golden = load_suite(SimpleNamespace(root=root), "questions.jsonl")
    about = {"corpus": "EXAMPLE (not a real corpus): the shipped Keelbox support docs, "
                       "src/tailorlm/examples/support/docs, with questions.jsonl (hand-written)",
             "documents": len(docs), "questions": len(golden), "unit": golden[0]["unit"]}
    return docs, golden, about


# --- the Debian documentation set ----------------------------------------------------------------------
FAQ_ROOT = Path("/usr/share/doc/debian/FAQ")  # Debian package debian-faq
REFERENCE_ROOT = Path("/usr/share/debian-reference")  # Debian package debian-reference-en
_QUESTION = re.compile(r"^\d+(?:\.\d+)+\.\s+(.+\?)$")  # "7.12. How do I put a package on hold?"


def debian_golden() -> tuple[list[Record], list[dict], dict]:
    """The Debian FAQ and the Debian Reference (HTML, read by Tailor's own document reader), and one
    question per FAQ section whose title is a question: the title without its number. Relevant: the
    chunks under that section (`section` unit: the FAQ page's path and the section's heading trail).

    The table-of-contents pages (index.en.html) are left out: they list every question and answer none.
    Install the packages with `apt-get install debian-faq debian-reference-en`."""
    from tailorlm.data.readers.docs import read_document, to_record

    paths = sorted(FAQ_ROOT.glob("*.en.html")) + sorted(REFERENCE_ROOT.glob("*.en.html"))
    paths = [p for p in paths if p.name != "index.en.html"]
    if not any(p.is_relative_to(FAQ_ROOT) for p in paths):
        raise SystemExit(f"no Debian FAQ under {FAQ_ROOT}: apt-get install debian-faq debian-reference-en")
    docs, golden = [], []
    for path in paths:
        doc = read_document(path)
        source = "faq" if path.is_relative_to(FAQ_ROOT) else "reference"
        rec = to_record(path, doc, path.parent, source)
        rec = Record(f"{source}/{rec.id}", "text", rec.content, {**rec.meta, "path": f"{source}/{rec.id}"})
        docs.append(rec)
        if source != "faq":
            continue
        for trail, _ in doc.sections:
            m = _QUESTION.match(trail[-1]) if trail else None
            if m:
                golden.append({"id": f"faq-{len(golden)}", "question": m.group(1),
                               "relevant": {section_key(rec.meta["path"], trail)}, "unit": "section"})
    about = {"corpus": "Debian FAQ (debian-faq 11.1) + Debian Reference (debian-reference-en 2.100), HTML read by "
                       "tailorlm's document reader; table-of-contents pages left out",
             "documents": len(docs), "faq_pages": sum(d.meta["source"] == "faq" for d in docs),
             "bytes": sum(len(d.content["text"].encode()) for d in docs), "questions": len(golden),
             "construction": "real questions: every FAQ section title that is a question, its number removed; "
                             "a hit is a chunk under that section (its heading trail starts with the section's)"}
    return docs, golden, about


def section_key(path: str, trail) -> str:
    return path + " :: " + " > ".join(trail)
