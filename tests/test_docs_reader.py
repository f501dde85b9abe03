"""The document reader: structure survives, boilerplate goes, and every bad file is a clear DocumentError
that `iter_documents` yields before carrying on with the good files after it."""

import json
from pathlib import Path

import pytest

import tailorlm
from tailorlm.data.readers.docs import DocText, DocumentError, iter_documents, read_document, to_record
from tailorlm.data.record import Record
from tailorlm.errors import TailorError

DOCS = Path(tailorlm.__file__).parent / "examples" / "support" / "docs"


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF, one Helvetica text line per page ('' makes a page with no text)."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        stream = b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text.encode() if text else b""
        objs.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        objs.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                    b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % len(objs))
        kids.append(b"%d 0 R" % len(objs))
    objs[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def test_markdown_keeps_markup_and_finds_the_heading_trail(tmp_path):
    md = ("Intro line.\r\n\r\n# Guide\r\n\r\nSome **bold** text.\r\n\r\n## Install\r\n\r\n```bash\r\n"
          "# not a heading, a shell comment\r\n```\r\n\r\n### On Linux\r\n\r\n## Use ##\r\n")
    (tmp_path / "guide.md").write_bytes(md.encode())
    doc = read_document(tmp_path / "guide.md")
    assert doc.text == md.replace("\r\n", "\n")  # markup kept as written, only line endings normalised
    assert doc.format == "markdown" and doc.title == "Guide" and doc.encoding == "utf-8"
    assert [trail for trail, _ in doc.sections] == [
        ["Guide"], ["Guide", "Install"], ["Guide", "Install", "On Linux"], ["Guide", "Use"]]
    assert [doc.text[offset:].split("\n")[0] for _, offset in doc.sections] == [
        "# Guide", "## Install", "### On Linux", "## Use ##"]


def test_rst_underlined_titles(tmp_path):
    rst = ("=========\n Manual\n=========\n\nIntro.\n\nSetup\n=====\n\n"
           "==========  =====\nCode        Note\n==========  =====\nA           b\n==========  =====\n\n"
           "Keys\n----\n\nText.\nnot a title\n-----------\n\nUsage\n=====\n")
    (tmp_path / "manual.rst").write_text(rst)
    doc = read_document(tmp_path / "manual.rst")
    assert doc.text == rst and doc.format == "rst" and doc.title == "Manual"
    assert doc.sections == [(["Manual"], 0), (["Manual", "Setup"], rst.index("Setup")),
                            (["Manual", "Setup", "Keys"], rst.index("Keys")), (["Manual", "Usage"], rst.index("Usage"))]


SETEXT_DOC = ("Intro line.\n\nGuide\n=====\n\nSome text.\n\nInstall\n-------\n\nRun it.\n\n---\n\n"
              "After a thematic break.\n\n### On Linux\n\nUse the package.\n\nA paragraph\nthen more\n---\n\n"
              "```\nnot a title\n===\n```\n\nUse\n---\n\nOpen it.\n")
ATX_DOC = ("Intro line.\n\n# Guide\n\nSome text.\n\n## Install\n\nRun it.\n\n---\n\n"
           "After a thematic break.\n\n### On Linux\n\nUse the package.\n\nA paragraph\nthen more\n---\n\n"
           "```\nnot a title\n===\n```\n\n## Use\n\nOpen it.\n")
TRAILS = [["Guide"], ["Guide", "Install"], ["Guide", "Install", "On Linux"], ["Guide", "Use"]]


@pytest.mark.parametrize("text", [SETEXT_DOC, ATX_DOC], ids=["setext", "atx"])
def test_setext_and_atx_headings_give_the_same_trail_to_the_reader_and_the_chunker(tmp_path, text):
    from tailorlm.rag.chunking import chunk_document

    (tmp_path / "guide.md").write_text(text)
    doc = read_document(tmp_path / "guide.md")
    assert [trail for trail, _ in doc.sections] == TRAILS and doc.title == "Guide"
    # a thematic break after a blank line, a paragraph's last line over `---` and `===` inside a fence
    # are no titles; the reader's offsets are where each heading's first line starts
    assert [doc.text[o:].split("\n")[0].lstrip("# ") for _, o in doc.sections] == ["Guide", "Install", "On Linux", "Use"]
    trails = [c.heading for c in chunk_document(doc.text, doc.format)]
    assert [t for i, t in enumerate(trails) if t and t not in trails[:i]] == TRAILS
    assert {tuple(t) for t in trails} == {(), *map(tuple, TRAILS)}


@pytest.mark.parametrize("name, kept, gone", [
    ("performance-tuning.html",
     ["# Performance tuning for the Keelbox Agent", "## Limiting bandwidth", "## Finding the bottleneck",
      "- Files are split into 4 MB blocks.", "exchange blocks directly on port 47100",
      "```\nkeel config set bandwidth.upload_kbps 2048\nkeel config set bandwidth.download_kbps 8192\n"
      'keel config set bandwidth.schedule "09:00-18:00@2048"\n```', "`keel doctor`"],
     ["We use cookies", "Accept all", "Reject non-essential", "Sign in", "Help Center", "Developers",
      "Related articles", "Was this article helpful", "All rights reserved", "support@keelbox.io"]),
    ("security-overview.html",
     ["# Security and compliance overview", "## Data residency", "## Reporting a vulnerability",
      "- SOC 2 Type II, renewed every year.\n- ISO/IEC 27001", "encrypted with AES-256 using a per-file key",
      "Console → Settings → Legal"],
     ["We use cookies", "Cookie settings", "Trust Center", "Administration", "All rights reserved",
      "does not form part of any agreement"]),
])
def test_html_examples_lose_boilerplate_and_keep_body(tmp_path, name, kept, gone):
    (tmp_path / name).write_bytes((DOCS / name).read_bytes())
    doc = read_document(tmp_path / name)
    assert doc.format == "html" and doc.title == kept[0][2:]
    for s in kept:
        assert s in doc.text
    for s in gone:
        assert s not in doc.text, s
    assert doc.sections[0] == ([doc.title], 0) and ([doc.title, kept[1][3:]], doc.text.index(kept[1])) in doc.sections


def test_html_structure(tmp_path):
    html = """<html><head><title>Page | Site</title><style>p {color: red}</style></head>
    <body class="cookie-consent-open"><div class="consent-modal">Allow tracking?</div>
    <script>var x = "<p>hidden</p>";</script><form><label>Email</label></form>
    <h2>Steps &amp; tips</h2><p>First   paragraph
    wraps.</p><ol><li>one<ul><li>nested</li></ul></li><li>two</li></ol>
    <pre><code>def f():
        return 1   # keep spacing
</code></pre><aside>Ad</aside><p>Last<br>line.</p></body></html>"""
    (tmp_path / "page.htm").write_text(html)
    doc = read_document(tmp_path / "page.htm")
    assert doc.text == ("## Steps & tips\n\nFirst paragraph wraps.\n\n- one\n  - nested\n- two\n\n"
                        "```\ndef f():\n        return 1   # keep spacing\n```\n\nLast line.")
    assert doc.title == "Steps & tips" and doc.sections == [(["Steps & tips"], 0)]
    (tmp_path / "bare.html").write_text("<html><head><title>Only  title</title></head><body><p>Hi</p></body></html>")
    assert read_document(tmp_path / "bare.html").title == "Only title"  # no heading: <title> names it


def test_pdf_is_read_back_page_by_page(tmp_path):
    (tmp_path / "note.pdf").write_bytes(make_pdf(["Hello PDF world", "Second page text"]))
    doc = read_document(tmp_path / "note.pdf")
    assert doc.text == "Hello PDF world\n\nSecond page text"
    assert doc.format == "pdf" and doc.encoding is None


def test_encodings(tmp_path):
    (tmp_path / "latin.txt").write_bytes("Café déjà vu: naïve façade, 10 €.\n".encode("cp1252"))
    (tmp_path / "wide.md").write_bytes("# Überschrift\r\n\r\nGrüße\r\n".encode("utf-16"))
    (tmp_path / "bom.md").write_bytes("\ufeff# Title\n".encode())
    latin = read_document(tmp_path / "latin.txt")
    assert (latin.text, latin.encoding) == ("Café déjà vu: naïve façade, 10 €.\n", "cp1252")
    wide = read_document(tmp_path / "wide.md")
    assert (wide.text, wide.encoding, wide.sections) == ("# Überschrift\n\nGrüße\n", "utf-16", [(["Überschrift"], 0)])
    assert read_document(tmp_path / "bom.md").text == "# Title\n"


def _dangling(path: Path):
    path.symlink_to(path.parent / "missing-target")


def _sparse_50mb(path: Path):
    with open(path, "wb") as f:
        f.truncate(50 * 2**20)


@pytest.mark.parametrize("name, make, reason", [
    ("bad.md", b"", "empty file"),
    ("bad.md", b" \n\t\r\n  ", "empty file (only whitespace)"),
    ("bad.txt", b"abc\x00\x01def" * 10, "binary content (NUL bytes in the first 8 KB)"),
    ("bad.txt", bytes(range(1, 9)) * 50, "binary content (100% control characters)"),
    ("bad.md", _sparse_50mb, "file is 50.0 MB, over the 1.0 MB limit"),
    ("bad.md", b"ok \xff\x81 text", "not valid UTF-8 (byte 0xff at offset 3)"),
    ("bad.md", bytes(range(0xA0, 0x100)) * 4, "not valid UTF-8 (byte 0xa0 at offset 0)"),  # decodes, but no text
    ("bad.xyz", b"hello", "unsupported file type .xyz"),
    ("bad", b"hello", "unsupported file type (no extension)"),
    ("bad.md", _dangling, "cannot read file: No such file or directory"),
    ("bad.pdf", b"%PDF-1.4\nthis is not a pdf", "cannot read PDF (corrupt or encrypted?)"),
    ("bad.pdf", make_pdf([""]), "no extractable text (scanned PDF?)"),
])
def test_bad_file_is_a_clear_error_and_the_walk_carries_on(tmp_path, name, make, reason):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Before\n")
    (folder / "z.md").write_text("# After\n")
    make(folder / name) if callable(make) else (folder / name).write_bytes(make)

    with pytest.raises(DocumentError) as info:
        read_document(folder / name, max_bytes=2**20)
    assert isinstance(info.value, TailorError) and info.value.path == folder / name
    assert info.value.reason.startswith(reason), info.value.reason

    results = list(iter_documents("docs", base=tmp_path, max_bytes=2**20))
    assert [p.name for p, _ in results] == sorted(["a.md", "z.md", name])
    by_name = {p.name: d for p, d in results}
    assert isinstance(by_name[name], DocumentError) and by_name[name].reason.startswith(reason)
    assert [by_name[n].title for n in ("a.md", "z.md")] == ["Before", "After"]


def test_a_folder_named_like_a_file(tmp_path):
    (tmp_path / "notes.md").mkdir()
    (tmp_path / "notes.md" / "inner.txt").write_text("inside")
    with pytest.raises(DocumentError, match="cannot read file: Is a directory"):
        read_document(tmp_path / "notes.md")
    assert [p.name for p, _ in iter_documents(".", tmp_path)] == ["inner.txt"]  # walked, not read


def test_walk_is_sorted_skips_hidden_and_globs(tmp_path):
    for rel in ["b.md", "a/z.md", "a/b.txt", "A.rst", ".hidden.md", ".git/config.md", "c/.secret/x.md", "c/y.md"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("Title\n=====\n")
    walked = [p.relative_to(tmp_path).as_posix() for p, _ in iter_documents("", tmp_path)]
    assert walked == ["A.rst", "a/b.txt", "a/z.md", "b.md", "c/y.md"]
    globbed = [p.relative_to(tmp_path).as_posix() for p, _ in iter_documents("**/*.md", tmp_path)]
    assert globbed == ["a/z.md", "b.md", "c/y.md"]
    assert [p.name for p, _ in iter_documents("b.md", tmp_path)] == ["b.md"]
    with pytest.raises(DocumentError, match="no such file or folder"):
        list(iter_documents("nope", tmp_path))


def test_all_example_docs_read_and_become_records(tmp_path):
    results = list(iter_documents(str(DOCS), base=DOCS.parent))
    assert len(results) == 19
    assert [d for _, d in results if not isinstance(d, DocText)] == []
    records = [to_record(p, d, DOCS.parent, source="support-docs") for p, d in results]
    assert sorted({r.meta["format"] for r in records}) == ["html", "markdown", "rst", "text"]
    rec = next(r for r in records if r.id == "docs/error-codes.rst")
    assert rec.kind == "text" and rec.content["text"].startswith("=====================\nKeelbox error codes")
    assert rec.meta["source"] == "support-docs" and rec.meta["path"] == "docs/error-codes.rst"
    assert rec.meta["title"] == "Keelbox error codes" and rec.meta["encoding"] == "utf-8"
    assert rec.meta["sections"][1] == [["Keelbox error codes", "Sign-in (KB-1xxx)"], rec.content["text"].index("Sign-in")]
    assert Record.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec  # meta is plain JSON
