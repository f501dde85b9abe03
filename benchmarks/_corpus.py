"""The benchmark corpus: real text already on this machine, read offline.

Two sources, both shipped by Debian packages:
- `/usr/share/doc/**`: READMEs, changelogs, NEWS and copyright files (`.gz` ones decompressed);
- `/usr/share/man/man[1-8]/*.gz`: the English manual pages, roff markup stripped crudely.

Real duplicates come with it: packages built from one source ship the same copyright file and
changelog, and many licences are the GPL with a different header. That gives dedup real work.

    docs, about = load_corpus(max_docs=5000, seed=0)
    about["documents"], about["bytes"]
"""

import gzip
import random
import re
from pathlib import Path

DOC_ROOT = Path("/usr/share/doc")
MAN_ROOT = Path("/usr/share/man")
# Past 100 kB a file is a long changelog or a whole manual: 2% of the files but 40% of the bytes,
# so they would make docs/s mostly a measure of a few giants. (datatrove's line dedup also
# indexes lines in 16 bits.)
MAX_BYTES = 100_000

# Macros whose arguments are text (section titles, bold and italic words, list tags); the
# arguments of every other request (.TH, .de, .ds, .if, .nr ...) are formatting, and go.
_TEXT_MACROS = {"SH", "SS", "B", "I", "BR", "RB", "BI", "IB", "IR", "RI", "SM", "SB", "IP",
                "Nm", "Nd", "Sh", "Ss", "Ar", "Fl", "Op", "Xr", "It", "Pa", "Dq", "Sq", "Em", "Cm", "Li"}
_ESCAPES = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)|\\s[+-]?\d+|\\\*(?:\[[^\]]*\]|\(..|.)|\\\(..|\\[&,/|^%:]")


def strip_roff(text: str) -> str:
    """Manual page source to roughly the words a reader sees: crude, but no markup is left that
    a quality filter would mistake for symbols.

    >>> strip_roff('.SH NAME\\nls \\\\- list\\n.PP\\n\\\\fBbold\\\\fR text')
    'NAME\\nls - list\\nbold text'
    """
    out = []
    for line in text.splitlines():
        if line.startswith((".", "'")):
            macro, _, args = line[1:].strip().partition(" ")
            if macro not in _TEXT_MACROS or not args.strip():
                continue
            line = args.replace('"', "")
        line = _ESCAPES.sub("", line.replace("\\-", "-").replace("\\e", "\\"))
        out.append(line)
    return "\n".join(out)


def _read(path: Path) -> str | None:
    """The text of one file, or None for a binary, empty or oversized one."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return None
    if not raw or len(raw) > MAX_BYTES or b"\x00" in raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if path.is_relative_to(MAN_ROOT):
        if text.startswith(".so "):  # a one-line redirect to another page
            return None
        text = strip_roff(text)
    return text if text.strip() else None


def candidate_paths() -> list[Path]:
    """Every regular file of both sources, in a fixed order. Symbolic links are skipped, so a
    page is not read twice under two names."""
    docs = [p for p in DOC_ROOT.rglob("*") if p.is_file() and not p.is_symlink()]
    man = [p for d in sorted(MAN_ROOT.glob("man[1-8]")) for p in d.glob("*.gz") if p.is_file() and not p.is_symlink()]
    return sorted(docs) + sorted(man)


def load_corpus(max_docs: int | None = None, seed: int = 0) -> tuple[list[tuple[str, str]], dict]:
    """(id, text) pairs and a description of what was read. With `max_docs`, a seeded random
    subset of the files, so both sources are represented; the order is shuffled either way."""
    paths = candidate_paths()
    random.Random(seed).shuffle(paths)
    docs: list[tuple[str, str]] = []
    skipped = 0
    for path in paths:
        if max_docs is not None and len(docs) >= max_docs:
            break
        text = _read(path)
        if text is None:
            skipped += 1
            continue
        docs.append((str(path), text))
    from_man = sum(d[0].startswith(str(MAN_ROOT)) for d in docs)
    about = {
        "sources": [f"{DOC_ROOT}/** (READMEs, changelogs, NEWS, copyright; .gz decompressed)",
                    f"{MAN_ROOT}/man[1-8]/*.gz (English manual pages, roff stripped crudely)"],
        "files_available": len(paths),
        "files_skipped": skipped,
        "skip_reasons": f"binary, not UTF-8, empty, '.so' redirect, or over {MAX_BYTES} bytes",
        "documents": len(docs),
        "documents_from_usr_share_doc": len(docs) - from_man,
        "documents_from_man_pages": from_man,
        "bytes": sum(len(t.encode()) for _, t in docs),
        "seed": seed,
    }
    return docs, about
