"""The document reader: a folder of Markdown, reST, HTML, plain-text and PDF files -> text Records.

It is the reader behind document-folder sources of `tailor data prepare` and `tailor rag index`.
Markdown and reST are kept as written (only line endings are normalised) because the RAG chunker
splits on their heading structure; HTML is reduced to its main text, rewritten as Markdown-style
`#` headings, paragraphs, `- ` list items and fenced code; PDFs go through `pypdf`.

Every problem with one file is a `DocumentError` with a reason a user can act on, and
`iter_documents` yields it instead of raising, so one bad file is quarantined, not fatal.
"""

import codecs
import glob
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

from tailorlm.data.readers.headings import headings
from tailorlm.data.record import Record
from tailorlm.errors import TailorError

FORMATS = {".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".html": "html", ".htm": "html",
           ".txt": "text", ".text": "text", ".pdf": "pdf"}
SUFFIXES = tuple(FORMATS)
MAX_BYTES = 20 * 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # C0/C1 controls except tab and newlines

Sections = list[tuple[list[str], int]]  # (heading trail, offset of the heading line in `text`)


class DocumentError(TailorError):
    """One document could not be read; `reason` says why, in words a user can act on."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


@dataclass(slots=True)
class DocText:
    text: str
    title: str | None
    format: str  # markdown | rst | html | text | pdf
    sections: Sections = field(default_factory=list)
    encoding: str | None = "utf-8"  # None for PDFs: pypdf hands us text, not bytes to decode


def read_document(path: Path, max_bytes: int = MAX_BYTES) -> DocText:
    """Read one document, or raise `DocumentError`.

        >>> read_document(Path("docs/billing-faq.md")).sections[1]
        (['Billing FAQ', 'When am I invoiced?'], 164)
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DocumentError(path, f"unsupported file type {path.suffix or '(no extension)'}; "
                                  f"readable types are {', '.join(SUFFIXES)}")
    try:
        size = path.stat().st_size  # checked before reading, so a huge file is never loaded
        if size > max_bytes:
            raise DocumentError(path, f"file is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.1f} MB limit")
        data = path.read_bytes()
    except OSError as e:
        raise DocumentError(path, f"cannot read file: {e.strerror or e}") from None
    if not data:
        raise DocumentError(path, "empty file")
    if fmt == "pdf":
        return _read_pdf(path, data)
    text, encoding = _decode(path, data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DocumentError(path, "empty file (only whitespace)")
    title = None
    if fmt == "html":
        text, title = _html_to_text(text)
        if not text:
            raise DocumentError(path, "no text left in the HTML after removing navigation and boilerplate")
    elif fmt == "text":
        title = text.strip().split("\n", 1)[0].strip()[:100]
    # HTML headings are `#` lines by now; plain text is scanned like reST (headings.py says why)
    sections = [(trail, start) for trail, start, _ in headings(text, fmt)]
    # the first heading beats a <title> (which usually ends in " | Site name") or a first line
    return DocText(text, sections[0][0][0] if sections else title, fmt, sections, encoding)


def iter_documents(folder_or_glob: str, base: Path, max_bytes: int = MAX_BYTES
                   ) -> Iterator[tuple[Path, DocText | DocumentError]]:
    """Every document in a folder (recursively) or matching a glob, relative to `base`, in sorted order.

    Hidden files and folders are skipped; unsupported and unreadable files are yielded as
    `DocumentError` so the caller can quarantine them and carry on. A folder or file that does
    not exist raises `DocumentError`: then the source itself is wrong, not one file in it.

        >>> [to_record(p, d, base, "docs").id for p, d in iter_documents("docs", base) if isinstance(d, DocText)]
        ['docs/account-deletion.md', 'docs/admin-console-guide.md', ...]
    """
    target = Path(base) / folder_or_glob  # an absolute folder_or_glob replaces base
    if target.is_dir():
        paths = _walk(target)
    elif target.exists() or target.is_symlink():
        paths = iter([target])
    elif glob.has_magic(str(folder_or_glob)):  # glob's `*` skips dotfiles, like the folder walk
        paths = (f for m in sorted(glob.glob(str(target), recursive=True))
                 for f in (_walk(Path(m)) if Path(m).is_dir() else [Path(m)]))
    else:
        raise DocumentError(target, "no such file or folder")
    for path in paths:
        try:
            yield path, read_document(path, max_bytes)
        except DocumentError as e:
            yield path, e


def to_record(path: Path, doc: DocText, base: Path, source: str) -> Record:
    """A `text` Record for a document; its id is the path relative to `base`."""
    try:
        rel = Path(path).relative_to(base).as_posix()
    except ValueError:  # a glob may reach outside base; the absolute path is still a stable id
        rel = Path(path).as_posix()
    meta = {"source": source, "path": rel, "format": doc.format, "title": doc.title,
            "encoding": doc.encoding, "sections": [[list(t), o] for t, o in doc.sections]}
    return Record(id=rel, kind="text", content={"text": doc.text}, meta=meta)


def _walk(folder: Path) -> Iterator[Path]:
    for entry in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        # linked folders are not walked: one could loop back to a parent
        yield from _walk(entry) if entry.is_dir() and not entry.is_symlink() else [entry]


def _decode(path: Path, data: bytes) -> tuple[str, str]:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # tested first: UTF-16 is full of NULs
        text, encoding = data.decode("utf-16", errors="replace"), "utf-16"  # only a cut-off last char fails
    elif b"\0" in data[:8192]:
        raise DocumentError(path, "binary content (NUL bytes in the first 8 KB), not a text document")
    else:
        try:
            text, encoding = data.decode("utf-8-sig"), "utf-8"
        except UnicodeDecodeError as e:
            # cp1252 also covers latin-1 text (it only rejects C1 controls, which prose never has).
            # Such prose is mostly ASCII with a few accents; binary or another encoding read as
            # cp1252 is a soup of symbols, and then the honest answer is "not UTF-8".
            text, encoding = data.decode("cp1252", errors="replace"), "cp1252"
            if "\ufffd" in text or sum(ch > "\x7f" for ch in text[:8192]) > 0.3 * len(text[:8192]):
                raise DocumentError(path, f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
                                          "re-save the file as UTF-8") from None
    sample = text[:8192]
    controls = len(_CONTROL.findall(sample))
    if controls > 0.05 * len(sample):
        raise DocumentError(path, f"binary content ({controls / len(sample):.0%} control characters), "
                                  "not a text document")
    return text, encoding


def _read_pdf(path: Path, data: bytes) -> DocText:
    try:
        import pypdf
    except ImportError:
        raise DocumentError(path, "reading PDFs needs pypdf: pip install pypdf") from None
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = (reader.metadata or {}).get("/Title")
    # pypdf raises many types (PdfReadError, KeyError, ...) on damaged files; it already tries
    # the empty password on encrypted ones, so those that still fail need the user's password
    except Exception as e:
        raise DocumentError(path, f"cannot read PDF (corrupt or encrypted?): {e}") from None
    text = "\n\n".join(p for p in pages if p)
    if not text:
        raise DocumentError(path, "no extractable text (scanned PDF?); run OCR on it first")
    return DocText(text, str(title or "").strip() or None, "pdf", [], None)


_DROP = {"head", "script", "style", "nav", "header", "footer", "aside", "form", "noscript", "template",
         "iframe", "svg"}
_BOILERPLATE = re.compile(r"cookie|consent|banner", re.I)
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCK = {"p", "div", "section", "article", "main", "blockquote", "table", "tr", "dl", "dt", "dd", "figure",
          "figcaption", "ul", "ol", "body", "details", "summary", "hr"}


class _HtmlText(HTMLParser):
    """Collects (kind, text) blocks: kind is `p`, `li`, `h` (text already `# ...`) or `pre`."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks, self.inline, self.title = [], [], ""
        self.skip = self.pre = self.lists = 0  # depth inside a dropped element / a <pre> / lists
        self.skip_tag, self.kind, self.prefix, self.in_title = None, "p", "", False

    def handle_starttag(self, tag, attrs):
        if tag == "title":  # inside the dropped <head>, but it names the page
            self.in_title = True
        elif self.skip:
            self.skip += tag == self.skip_tag
        # sites put classes like "cookie-consent-open" on <body> too: never drop the whole page
        elif tag in _DROP or (tag not in {"html", "body", "main", "article"}
                              and _BOILERPLATE.search(" ".join(v or "" for k, v in attrs if k in ("id", "class")))):
            self.skip, self.skip_tag = 1, tag
        elif self.pre:
            self.pre += tag == "pre"
            self.inline.append("\n" if tag == "br" else "")
        elif tag == "pre":
            self.flush()
            self.pre = 1
        elif tag in ("br", "code"):  # inline code keeps its Markdown backticks
            self.inline.append(" " if tag == "br" else "`")
        elif tag in _HEADINGS or tag == "li":
            self.flush()
            self.kind = "li" if tag == "li" else "h"
            self.prefix = "  " * max(self.lists - 1, 0) + "- " if tag == "li" else "#" * int(tag[1]) + " "
        elif tag in _BLOCK:
            self.flush()
            self.lists += tag in ("ul", "ol")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        elif self.skip:
            self.skip -= tag == self.skip_tag
        elif tag == "code" and not self.pre:
            self.inline.append("`")
        elif self.pre:
            self.pre -= tag == "pre"
            if not self.pre:  # verbatim: no whitespace collapsing inside code
                self.blocks.append(("pre", "```\n" + "".join(self.inline).strip("\n") + "\n```"))
                self.inline = []
        elif tag in _BLOCK or tag in _HEADINGS or tag == "li":
            self.flush()
            self.lists -= tag in ("ul", "ol") and self.lists > 0

    def handle_data(self, data):
        if self.in_title:
            self.title += data
        elif not self.skip:
            self.inline.append(data)

    def flush(self):
        body = " ".join("".join(self.inline).split())
        if body:
            self.blocks.append((self.kind, self.prefix + body))
        self.inline, self.kind, self.prefix = [], "p", ""


def _html_to_text(html: str) -> tuple[str, str | None]:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    parser.flush()
    # list items stay on consecutive lines; every other block is its own paragraph
    pairs = zip([("", "")] + parser.blocks, parser.blocks)
    text = "".join(("\n" if kind == prev == "li" else "\n\n") + t for (prev, _), (kind, t) in pairs)
    return text.lstrip("\n"), " ".join(parser.title.split()) or None
