"""The RAG chunker: heading trails, whole code blocks and table rows, overlap inside a section only,
offsets that point back into the document, and full coverage, on made-up and on all shipped docs."""

import re
from pathlib import Path

import pytest

import tailorlm
from tailorlm.data.readers.docs import read_document, to_record
from tailorlm.rag.chunking import Chunk, approx_tokens, chunk_document, chunk_record

DOCS = Path(tailorlm.__file__).parent / "examples" / "support" / "docs"
ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:._<>!])\1{2,}$")


def sentences(n: int, topic: str) -> str:
    return " ".join(f"Sentence {i} about {topic} has several plain words in it." for i in range(n))


def check(text: str, chunks: list[Chunk], max_tokens: int, count=approx_tokens, titles=()):
    """The properties every chunking must have."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    covered = [False] * len(text)
    for c in chunks:
        assert text[c.start:c.end] == c.text and c.text.rstrip() == c.text and c.text.strip()
        assert c.oversize or count(c.text) <= max_tokens, (count(c.text), c.text)
        covered[c.start:c.end] = [True] * (c.end - c.start)
    # whatever no chunk holds is whitespace or a heading line (a title, `#` line or reST adornment)
    pos = 0
    for line in text.split("\n"):
        missed = "".join(ch for ch, cov in zip(line, covered[pos:pos + len(line)]) if not cov).strip()
        if missed:
            s = line.strip()
            assert ADORNMENT.match(s) or s.lstrip("#").strip() in titles or s in titles, f"not covered: {line!r}"
        pos += len(line) + 1


def test_markdown_heading_trails_nest_and_never_cross():
    text = ("Preamble before any heading.\n\n# Guide\n\nIntro.\n\n## Install\n\nRun the installer.\n\n"
            "### On Linux\n\nUse the package.\n\n### On macOS\n\nDrag the app.\n\n## Use\n\nOpen it.\n")
    chunks = chunk_document(text)
    assert [(c.heading, c.text) for c in chunks] == [
        ([], "Preamble before any heading."), (["Guide"], "Intro."), (["Guide", "Install"], "Run the installer."),
        (["Guide", "Install", "On Linux"], "Use the package."), (["Guide", "Install", "On macOS"], "Drag the app."),
        (["Guide", "Use"], "Open it.")]
    assert chunks[3].embed_text == "Guide > Install > On Linux\n\nUse the package."
    assert chunks[0].embed_text == "Preamble before any heading."


def test_setext_headings_but_not_thematic_breaks():
    text = "Title\n=====\n\nIntro text.\n\nPart\n----\n\nPart text.\n\n---\n\nAfter the rule.\n"
    chunks = chunk_document(text)
    assert [c.heading for c in chunks] == [["Title"], ["Title", "Part"]]
    assert chunks[1].text == "Part text.\n\n---\n\nAfter the rule."


def test_rst_heading_trails_follow_adornment_order():
    text = ("=======\nManual\n=======\n\nAbout it.\n\nSetup\n-----\n\nSet it up.\n\nDetails\n~~~~~~~\n\n"
            "The details.\n\nUsage\n-----\n\nUse it.\n")
    chunks = chunk_document(text, "rst")
    assert [(c.heading, c.text) for c in chunks] == [
        (["Manual"], "About it."), (["Manual", "Setup"], "Set it up."),
        (["Manual", "Setup", "Details"], "The details."), (["Manual", "Usage"], "Use it.")]
    check(text, chunks, 256, titles={"Manual", "Setup", "Details", "Usage"})


def test_fenced_code_longer_than_max_is_one_intact_oversize_chunk():
    code = "```python\n" + "\n".join(f"# step {i}\nvalue_{i} = compute({i}, 'x')" for i in range(60)) + "\n```"
    text = f"# Script\n\n{sentences(3, 'setup')}\n\n{code}\n\n{sentences(3, 'cleanup')}\n"
    chunks = chunk_document(text, max_tokens=40, overlap_tokens=8)
    assert all(c.heading == ["Script"] for c in chunks)  # `# step` lines inside the fence are no headings
    big = [c for c in chunks if "```" in c.text]
    assert len(big) == 1 and big[0].text == code and big[0].oversize and approx_tokens(code) > 40
    assert sum(c.oversize for c in chunks) == 1
    # no overlap into or out of the code block
    i = chunks.index(big[0])
    assert chunks[i - 1].end < big[0].start and chunks[i + 1].start > big[0].end
    check(text, chunks, 40, titles={"Script"})


def test_small_code_block_merges_with_its_paragraph_and_rst_code_stays_whole():
    text = "# Run\n\nType this:\n\n```\nkeel sync\n```\n\nThen wait.\n"
    assert [c.text for c in chunk_document(text)] == ["Type this:\n\n```\nkeel sync\n```\n\nThen wait."]
    body = "\n".join(f"   keel restore --path /folder/{i} --to /tmp/{i}" for i in range(40))
    rst = f"Restore\n=======\n\nRun these::\n\n{body}\n\n.. code-block:: bash\n\n{body}\n\nDone.\n"
    chunks = chunk_document(rst, "rst", max_tokens=30, overlap_tokens=5)
    assert [c.text for c in chunks if c.oversize] == [body, ".. code-block:: bash\n\n" + body]
    check(rst, chunks, 30, titles={"Restore"})


def test_tables_stay_whole_when_they_fit_and_split_between_rows_when_not():
    small = "| Plan | Price |\n|------|-------|\n| Team | 8 |\n| Business | 15 |"
    assert chunk_document(f"# Plans\n\n{small}\n")[0].text == small
    rows = "\n".join(f"| Plan {i} | {i} dollars a month for each seat |" for i in range(40))
    text = f"# Plans\n\n| Plan | Price |\n|---|---|\n{rows}\n"
    chunks = chunk_document(text, max_tokens=50, overlap_tokens=10)
    assert len(chunks) > 3
    assert chunks[0].text.startswith("| Plan | Price |\n|---|---|\n| Plan 0")  # the header stays with a row
    for c in chunks:
        assert set(c.text.split("\n")) <= set(text.split("\n"))  # whole rows only
    assert all(b.start > a.end for a, b in zip(chunks, chunks[1:]))  # rows are not repeated
    check(text, chunks, 50, titles={"Plans"})
    simple = "\n".join(f"KB-{1000 + i}     Error number {i} and how to fix it quickly." for i in range(30))
    border = "========  =============================================="
    rst = f"Codes\n=====\n\n{border}\nCode      Meaning\n{border}\n{simple}\n{border}\n"
    chunks = chunk_document(rst, "rst", max_tokens=40)
    assert chunks[0].text.startswith(f"{border}\nCode      Meaning\n{border}\nKB-1000")
    assert all(re.fullmatch(r"(KB-\d{4} .*\.|=[= ]+)", line) for c in chunks[1:] for line in c.text.split("\n"))
    check(rst, chunks, 40, titles={"Codes"})


def test_overlap_within_a_long_section_and_none_across_headings():
    text = f"# A\n\n{sentences(40, 'alpha')}\n\n# B\n\n{sentences(40, 'beta')}\n"
    chunks = chunk_document(text, max_tokens=60, overlap_tokens=12)
    b_start = text.index("# B")
    for prev, cur in zip(chunks, chunks[1:]):
        if prev.heading == cur.heading:
            assert cur.start < prev.end, "consecutive chunks of one section should overlap"
            shared = text[cur.start:prev.end]
            assert 0 < approx_tokens(shared) <= 12 and text[cur.start - 1].isspace()  # whole words
        else:
            assert prev.end < b_start < cur.start
    assert {tuple(c.heading) for c in chunks} == {("A",), ("B",)} and len(chunks) > 6
    check(text, chunks, 60, titles={"A", "B"})
    plain = chunk_document(text, max_tokens=60, overlap_tokens=0)
    assert all(b.start >= a.end for a, b in zip(plain, plain[1:]))


def test_a_sentence_longer_than_max_is_cut_at_word_boundaries():
    text = " ".join(f"word{i}" for i in range(500))
    chunks = chunk_document(text, "text", max_tokens=50, overlap_tokens=10)
    assert len(chunks) > 10 and not any(c.oversize for c in chunks)
    for c in chunks:
        assert re.fullmatch(r"word\d+( word\d+)*", c.text)
        assert (c.start == 0 or text[c.start - 1] == " ") and (c.end == len(text) or text[c.end] == " ")
    check(text, chunks, 50)


def test_injected_token_counter_sets_the_sizes():
    calls = []

    def chars(s: str) -> int:  # a "tokenizer" of 4 characters per token, nothing like words * 1.3
        calls.append(s)
        return len(s) // 4

    text = f"# Long\n\n{sentences(30, 'counting')}\n\n{sentences(30, 'more counting')}\n"
    chunks = chunk_document(text, max_tokens=100, overlap_tokens=20, count_tokens=chars)
    assert calls and max(chars(c.text) for c in chunks) <= 100 < max(len(c.text) for c in chunks) // 3
    check(text, chunks, 100, count=chars, titles={"Long"})
    assert len(chunks) != len(chunk_document(text, max_tokens=100, overlap_tokens=20))


def test_whitespace_and_empty_sections_make_no_chunks():
    assert chunk_document("  \n\n \t\n") == []
    assert [c.heading for c in chunk_document("# Empty\n\n## Also empty\n\n## Full\n\nText.")] == [
        ["Empty", "Full"]]
    with pytest.raises(ValueError, match="unknown document format"):
        chunk_document("x", "docx")


@pytest.mark.parametrize("path", sorted(DOCS.iterdir()), ids=lambda p: p.name)
@pytest.mark.parametrize("max_tokens,overlap", [(256, 32), (48, 12)])
def test_every_example_document(path, max_tokens, overlap):
    doc = read_document(path)
    chunks = chunk_document(doc.text, doc.format, max_tokens, overlap)
    assert chunks and chunks == chunk_document(doc.text, doc.format, max_tokens, overlap)  # deterministic
    titles = {t[-1] for t, _ in doc.sections}
    check(doc.text, chunks, max_tokens, titles=titles)
    bounds = [off for _, off in doc.sections] + [len(doc.text)]
    for c in chunks:  # inside one section of the reader's, and labelled with that section's trail
        assert not any(c.start < off < c.end for off in bounds)
        owner = [t for t, off in doc.sections if off < c.start]
        assert c.heading == (owner[-1] if owner else [])
    assert chunk_record(to_record(path, doc, DOCS, "docs"), max_tokens=max_tokens,
                        overlap_tokens=overlap) == chunks


@pytest.mark.parametrize("name", ["performance-tuning.html", "security-overview.html"])
def test_html_chunks_take_their_headings_from_h1_and_h2(name):
    html = (DOCS / name).read_text()
    h1 = re.findall(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    h2 = {" ".join(re.sub(r"<[^>]+>", "", h).split()) for h in re.findall(r"<h2[^>]*>(.*?)</h2>", html, re.S)}
    doc = read_document(DOCS / name)
    chunks = chunk_document(doc.text, doc.format)
    assert len(h1) == 1 and h2 and all(c.heading[0] == " ".join(h1[0].split()) for c in chunks)
    assert {c.heading[1] for c in chunks if len(c.heading) > 1} == h2
