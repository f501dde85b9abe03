"""Structure-aware chunking: one document's text -> `Chunk`s of at most `max_tokens` tokens.

`tailor rag index` reads documents with `tailorlm.data.readers.docs` (or takes `text` records from a
dataset version), splits each one here, embeds `Chunk.embed_text` and keeps `text`, `start`, `end`
and `heading` for citations. The split follows the document's own structure, coarsest first:
headings (a chunk never spans two sections), blank-line paragraphs, sentence ends, and word
boundaries only as a last resort. Small paragraphs of one section are merged up to `max_tokens`.
Code blocks are never split: one longer than `max_tokens` becomes its own chunk, flagged
`oversize`. Tables stay whole when they fit, else they are split between rows. Consecutive chunks
of one section share about `overlap_tokens` of trailing prose, so a fact cut in two is still
found whole; nothing overlaps across a heading or into or out of a code block or table.

    >>> [c.heading for c in chunk_document("# Guide\\n\\nIntro.\\n\\n## Install\\n\\nRun it.")]
    [['Guide'], ['Guide', 'Install']]
"""

import math
import re
from dataclasses import dataclass
from typing import Callable

# the reader's own heading parser, so chunk trails match `DocText.sections`
from tailorlm.data.readers.headings import FENCE, headings

Counter = Callable[[str], int]
Span = tuple[int, int, str]  # (start, end, kind); kind is "prose", "code" or "table"


def approx_tokens(text: str) -> int:
    """About 1.3 tokens per whitespace-separated word: near what BPE tokenizers give on English prose,
    and free of any model, so tests need no tokenizer. Code and tables run higher per word, which is
    why the index passes the embedder's tokenizer instead."""
    return math.ceil(len(text.split()) * 1.3)


@dataclass(slots=True)
class Chunk:
    """One piece of a document. `text == doc[start:end]`: the raw body, for citing and highlighting.
    `heading` is the trail of section titles above it, `[]` before the first heading."""

    text: str
    start: int
    end: int
    heading: list[str]
    index: int  # position within the document
    oversize: bool = False  # a code block, table row or giant word that alone exceeds max_tokens

    @property
    def embed_text(self) -> str:
        """What the index embeds: the heading trail, then the body, e.g. "Restore guide > From the CLI\\n\\n...".
        Bodies rarely repeat their section's title, so without it "how do I restore from the CLI" misses."""
        return " > ".join(self.heading) + "\n\n" + self.text if self.heading else self.text


def chunk_document(text: str, fmt: str = "markdown", max_tokens: int = 256, overlap_tokens: int = 32,
                   count_tokens: Counter | None = None) -> list[Chunk]:
    """Split a document (`DocText.text`, with its `format`) into chunks; sizes are in tokens of `count_tokens`
    (default `approx_tokens`). Every non-whitespace character outside heading lines is in some chunk.

        >>> tok = embedder.tokenizer
        >>> chunk_document(doc.text, doc.format, 256, 32, lambda s: len(tok(s, add_special_tokens=False).input_ids))
    """
    if fmt not in ("markdown", "html", "rst", "text", "pdf"):
        raise ValueError(f"unknown document format {fmt!r}; expected markdown, html, rst, text or pdf")
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    count = count_tokens or approx_tokens
    heads = headings(text, fmt)
    # the preamble before the first heading is a section with an empty trail
    sections = [([], 0, heads[0][1] if heads else len(text))]
    sections += [(trail, body, nxt) for (trail, _, body), nxt in zip(heads, [h[1] for h in heads[1:]] + [len(text)])]
    chunks = []
    for trail, start, end in sections:
        pieces = _pieces(text, _blocks(text, start, end, fmt), max_tokens, count)
        for a, b, oversize in _pack(text, pieces, max_tokens, overlap_tokens, count):
            chunks.append(Chunk(text[a:b], a, b, list(trail), len(chunks), oversize))
    return chunks


def chunk_record(record, **kwargs) -> list[Chunk]:
    """Chunks of a `text` Record from a dataset version; `meta["format"]` (default "text") picks the rules."""
    return chunk_document(record.content["text"], record.meta.get("format") or "text", **kwargs)


def _lines(text: str, start: int, end: int) -> list[tuple[int, str]]:
    out, pos = [], start
    for line in text[start:end].split("\n"):
        out.append((pos, line))
        pos += len(line) + 1
    return out


_CODE_DIRECTIVE = re.compile(r"^\s*\.\. (code-block|code|sourcecode)::")
_GRID = re.compile(r"^\s*\+[-=+]+\+\s*$")  # reST grid table border
_SIMPLE = re.compile(r"^\s*=+( +=+)+\s*$")  # reST simple table border
_RULE = re.compile(r"^[\s|+:=-]*$")  # a table line of only rule punctuation


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _blocks(text: str, start: int, end: int, fmt: str) -> list[Span]:
    """A section body as blocks: blank-line paragraphs ("prose") and atomic "code" and "table" blocks."""
    lines, md = _lines(text, start, end), fmt in ("markdown", "html")
    blocks, para, colons, i, n = [], None, None, 0, len(lines)

    def add(kind, a, b):  # lines a..b-1 (line a is never blank), without trailing whitespace
        s = lines[a][0] + (_indent(lines[a][1]) if kind == "prose" else 0)  # code keeps its indentation
        e = lines[b - 1][0] + len(lines[b - 1][1])
        blocks.append((s, s + len(text[s:e].rstrip()), kind))

    while i < n:
        line, j, kind = lines[i][1], None, "code"
        if not line.strip():
            if para is not None:
                add("prose", para, i)
            para, i = None, i + 1
            continue
        if md and (m := FENCE.match(line)):  # fenced code: up to the closing fence, or the section's end
            j = i + 1
            while j < n and not ((c := FENCE.match(lines[j][1])) and c.group(1).startswith(m.group(1)[:3])):
                j += 1
            j = min(j + 1, n)
        elif not md and (_CODE_DIRECTIVE.match(line)
                         or (para is None and colons is not None and _indent(line) > colons)):
            # `.. code-block::` with its options and indented body, or the indented block after a `::` line
            base = _indent(line) if _CODE_DIRECTIVE.match(line) else colons
            j = i + 1
            while j < n and (not lines[j][1].strip() or _indent(lines[j][1]) > base):
                j += 1
        elif (md and line.lstrip().startswith("|")) or (not md and _GRID.match(line)):
            kind, j = "table", i + 1
            while j < n and lines[j][1].lstrip()[:1] in (("|",) if md else ("|", "+")):
                j += 1
        elif not md and _SIMPLE.match(line):  # a simple table ends at a border followed by a blank line
            kind, j = "table", i + 1
            while j < n and not (_SIMPLE.match(lines[j][1]) and (j + 1 == n or not lines[j + 1][1].strip())):
                j += 1
            j = min(j + 1, n)
        if j is None:
            para = i if para is None else para
            # a reST paragraph ending in `::` announces an indented literal block (not a `.. note::` body)
            colons = _indent(line) if line.rstrip().endswith("::") and not line.lstrip().startswith("..") else None
            i += 1
            continue
        if para is not None:
            add("prose", para, i)
        add(kind, i, j)
        para, colons, i = None, None, j
    if para is not None:
        add("prose", para, n)
    return blocks


# a sentence ends at . ! ? (and closing quotes or brackets) before whitespace; a list item starts one too
_BREAK = re.compile(r"[.!?][\"')\]]*\s+|\n(?=[ \t]*(?:[-*+]|\d+[.)])[ \t])")


def _pieces(text: str, blocks: list[Span], limit: int, count: Counter) -> list[Span]:
    """Blocks cut down until each piece fits `limit`: tables into rows, prose into sentences, then words."""
    out = []
    for s, e, kind in blocks:
        if kind == "code" or count(text[s:e]) <= limit:
            out.append((s, e, kind))
        elif kind == "table":
            out += [(a, b, "table") for a, b in _rows(text, s, e)]
        else:
            cuts = [s] + [s + m.end() for m in _BREAK.finditer(text[s:e])] + [e]
            for a, b in zip(cuts, cuts[1:]):
                b = a + len(text[a:b].rstrip())
                if a >= b:
                    continue
                if count(text[a:b]) <= limit:
                    out.append((a, b, "prose"))
                else:
                    out += [(x, y, "prose") for x, y in _windows(text, a, b, limit, count)]
    return out


def _rows(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """A table's rows: the header with its rules is one; a grid row runs to its border, a simple-table
    row takes its indented continuation lines."""
    lines = _lines(text, start, end)
    grid, base = lines[0][1].lstrip().startswith("+"), _indent(lines[0][1])
    rows, prev_rule = [], False  # rows: [start, end, has a non-rule line]
    for pos, line in lines:
        rule = bool(_RULE.match(line))
        joins = rule or (grid and not prev_rule) or (not grid and _indent(line) > base)
        if not rows or (rows[-1][2] and not joins):
            rows.append([pos, pos + len(line), False])
        rows[-1][1:] = [pos + len(line), rows[-1][2] or not rule]
        prev_rule = rule
    return [(a, b) for a, b, _ in rows]


def _largest(n: int, ok: Callable[[int], bool]) -> int:
    """The largest k in 1..n with ok(k), or 0; token counts grow with the text, so ok holds on a prefix.
    The search gallops up from 1 so that it only ever counts texts about as long as the answer."""
    lo, hi = 0, 1
    while hi <= n and ok(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, n + 1)  # ok(hi) is false or out of range
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _windows(text: str, start: int, end: int, limit: int, count: Counter):
    """The last resort for a sentence over `limit`: runs of whole words that fit."""
    words = [(start + m.start(), start + m.end()) for m in re.finditer(r"\S+", text[start:end])]
    i = 0
    while i < len(words):
        k = max(_largest(len(words) - i, lambda k: count(text[words[i][0]:words[i + k - 1][1]]) <= limit), 1)
        yield words[i][0], words[i + k - 1][1]
        i += k


def _pack(text: str, pieces: list[Span], limit: int, overlap: int, count: Counter) -> list[tuple[int, int, bool]]:
    """Greedily merge one section's consecutive pieces into (start, end, oversize) chunks of <= limit tokens."""
    out, i = [], 0
    while i < len(pieces):
        starts = [pieces[i][0]]
        if out and overlap > 0 and pieces[i][2] == pieces[i - 1][2] == "prose":
            if (ov := _overlap_start(text, pieces, i, out[-1][0], overlap, count)) is not None:
                starts.insert(0, ov)
        oversize = False
        for start in starts:  # with the overlap if the next pieces still fit after it, else without
            k = _largest(len(pieces) - i, lambda k, s=start: count(text[s:pieces[i + k - 1][1]]) <= limit)
            if k:
                break
        else:  # one piece that cannot be cut (code, a table row, a giant word) and does not fit
            start, k, oversize = pieces[i][0], 1, True
        out.append((start, pieces[i + k - 1][1], oversize))
        i += k
    return out


def _overlap_start(text: str, pieces: list[Span], i: int, prev_start: int, overlap: int, count: Counter) -> int | None:
    """Where the chunk after `pieces[i - 1]` should start to repeat up to `overlap` tokens of whole words
    from the previous chunk's trailing prose, or None."""
    prev_end, j = pieces[i - 1][1], i - 1
    while j > 0 and pieces[j - 1][2] == "prose" and pieces[j - 1][1] > prev_start:
        j -= 1
    lo = max(pieces[j][0], prev_start)
    # never the previous chunk's first word: a chunk must not swallow the one before it whole
    words = [lo + m.start() for m in re.finditer(r"\S+", text[lo:prev_end]) if lo + m.start() > prev_start]
    k = _largest(len(words), lambda k: count(text[words[-k]:prev_end]) <= overlap)
    return words[-k] if k else None
