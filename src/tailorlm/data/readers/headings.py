"""Heading structure of a document: the one heading parser behind the reader and the RAG chunker.

`data/readers/docs.py` stores each document's sections (`DocText.sections`, a record's
`meta["sections"]`) and `rag/chunking.py` gives every chunk its heading trail; both call
`headings` here, so a section the reader lists is exactly a section the chunker cuts at.

- Markdown (and HTML, which the reader rewrites as `#` headings): ATX `#` headings outside fenced
  code, and one-line Setext titles (`===` level 1, `---` level 2) that follow a blank line, so that a
  thematic break `---` after a paragraph's blank line is not mistaken for one.
- reST (and plain text, whose underlined titles are how .txt files usually mark headings): each new
  adornment style (character, with or without overline) takes the next level in order of first
  appearance, as docutils does.
- PDF: none; extracted PDF text has no markup to trust.

    >>> [trail for trail, _, _ in headings("Guide\\n=====\\n\\nIntro.\\n\\n## Install\\n\\nRun it.", "markdown")]
    [['Guide'], ['Guide', 'Install']]
"""

import itertools
import re

Heading = tuple[list[str], int, int]  # (trail of titles, start of the heading's first line, start of its body)

ATX = re.compile(r"^(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")  # a fenced code block's opening or closing line
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
ADORN = re.compile(r"^([=\-~^\"'`#*+:._<>!])\1{2,}\s*$")  # a reST title's under/overline
_NOT_TITLE = re.compile(r"^( {4}|\s*([-*+>|]|\d+[.)])(\s|$))")  # list items, quotes, tables, indented code


def headings(text: str, fmt: str) -> list[Heading]:
    """Every heading of a document in `fmt` (markdown | html | rst | text | pdf), in order."""
    if fmt == "pdf":
        return []
    return markdown_headings(text) if fmt in ("markdown", "html") else rst_headings(text)


def nest(stack: list[tuple[int, str]], level: int, title: str) -> list[tuple[int, str]]:
    """The (level, title) trail after a heading at `level`: it closes deeper or equal ones."""
    return [(lv, t) for lv, t in stack if lv < level] + [(level, title)]


def _line_starts(lines: list[str]) -> list[int]:
    return [0] + list(itertools.accumulate(len(line) + 1 for line in lines))


def markdown_headings(text: str) -> list[Heading]:
    """ATX and Setext headings outside fenced code (see the module docstring for the rules)."""
    lines = text.split("\n")
    starts = _line_starts(lines)
    out, stack, fence = [], [], None
    for i, line in enumerate(lines):
        m = FENCE.match(line)
        if m and (fence is None or m.group(1).startswith(fence)):
            fence = None if fence else m.group(1)[:3]  # a `# comment` in a code block is no heading
        elif fence is None and (m := ATX.match(line)):
            stack = nest(stack, len(m.group(1)), m.group(2).strip())
            out.append(([t for _, t in stack], starts[i], min(starts[i + 1], len(text))))
        elif (fence is None and i + 1 < len(lines) and (u := SETEXT.match(lines[i + 1])) and line.strip()
              and not _NOT_TITLE.match(line) and (i == 0 or not lines[i - 1].strip())):
            stack = nest(stack, 1 if u.group(1)[0] == "=" else 2, line.strip())
            out.append(([t for _, t in stack], starts[i], min(starts[i + 2], len(text))))
    return out


def rst_headings(text: str) -> list[Heading]:
    """reST section titles: underlined, or over- and underlined alike, flush left after a blank line."""
    lines = text.split("\n")
    starts = _line_starts(lines)
    out, styles, stack = [], {}, []
    for i, (title, under) in enumerate(zip(lines, lines[1:])):
        m = ADORN.match(under)
        if not m or not title.strip() or ADORN.match(title) or len(under.rstrip()) < len(title.strip()):
            continue
        over = i > 0 and lines[i - 1].rstrip() == under.rstrip()
        # without an overline a title is flush left after a blank line; anything else is a paragraph
        if not over and (title[0].isspace() or (i > 0 and lines[i - 1].strip())):
            continue
        stack = nest(stack, styles.setdefault((m.group(1), over), len(styles)), title.strip())
        out.append(([t for _, t in stack], starts[i - 1 if over else i], min(starts[i + 2], len(text))))
    return out
