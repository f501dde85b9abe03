"""Read JSONL, CSV and Parquet sources into Records, with per-line validation.

Accepted shapes, detected per line (or forced with the source's `kind`):
- OpenAI chat fine-tune `{"messages": [...], "tools"?: [...]}` and legacy `{"prompt", "completion"}` -> chat
- Alpaca `{"instruction", "input"?, "output", "system"?}` -> chat
- `{"prompt", "chosen", "rejected"}` (strings or TRL-style message lists) -> preference
- `{"text": ...}` -> text
- `{"input", "reference"? , "labels"?}` -> eval

`fields` in the source config renames the user's columns to these, e.g. `{text: body}`.
Every problem becomes a `Rejected(file, line, field, reason)`; valid records are kept.
"""

import codecs
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tailorlm.data.record import Record

ROLES = ("system", "user", "assistant", "tool")
MAX_LINE_BYTES = 10 * 1024 * 1024  # one record larger than this is almost surely a broken export


@dataclass
class Rejected:
    file: str
    line: int | None
    field: str
    reason: str
    raw: str = ""

    def where(self) -> str:
        line = f":{self.line}" if self.line is not None else ""
        return f"{self.file}{line}: {self.field}: {self.reason}"


class Bad(Exception):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix == ".parquet":
        return "parquet"
    return "docs"


def read_file(path: Path, rel: str, source: str, fmt: str = "auto", kind: str | None = None,
              fields: dict | None = None) -> Iterator[Record | Rejected]:
    """Records and rejections from one structured file, in file order."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    try:
        head = path.open("rb").read(8192)
    except OSError as e:
        yield Rejected(rel, None, "(file)", f"cannot read: {e.strerror or e}")
        return
    if fmt in ("jsonl", "csv") and b"\x00" in head:
        yield Rejected(rel, None, "(file)", "binary file (NUL bytes), not text")
        return
    rows = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[fmt](path, rel)
    file_kind, first_line = kind, None
    seen: set[int] = set()  # 128-bit hashes of the ids so far: a million ids in ~60 MB, not their text
    empty = True
    for item in rows:
        empty = False
        if isinstance(item, Rejected):
            yield item
            continue
        line, obj, raw, *header = item
        try:
            record = _record(obj, line, source, rel, kind, fields or {}, header[0] if header else None)
            if file_kind is None:
                file_kind, first_line = record.kind, line
            elif record.kind != file_kind:
                origin = f"from line {first_line}" if first_line else "configured"
                raise Bad("(line)", f"mixed kinds: this file is {file_kind} ({origin}), this line is {record.kind}")
            if _id_key(record.id) in seen:
                raise Bad("id", f"duplicate id {record.id!r}")
        except Bad as e:
            yield Rejected(rel, line, e.field, e.reason, raw[:2000])
            continue
        seen.add(_id_key(record.id))
        yield record
    if empty:
        yield Rejected(rel, None, "(file)", "empty file: no records")


def _id_key(record_id: str) -> int:
    import xxhash

    return xxhash.xxh3_128_intdigest(record_id)


def _jsonl_rows(path: Path, rel: str):
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if len(raw) > MAX_LINE_BYTES:
                yield Rejected(rel, n, "(line)", f"line is {len(raw) / 1e6:.0f} MB, over the {MAX_LINE_BYTES // 2**20} MB limit")
                continue
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a BOM from Windows tools
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield Rejected(rel, n, "(line)", f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})")
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                yield Rejected(rel, n, "(line)", json_reason(e), text[:2000])
                continue
            except RecursionError:
                yield Rejected(rel, n, "(line)", "JSON nested too deeply", text[:200])
                continue
            if not isinstance(obj, dict):
                yield Rejected(rel, n, "(line)", f"expected a JSON object, got {type(obj).__name__}", text[:2000])
                continue
            yield n, obj, text


def json_reason(e: json.JSONDecodeError) -> str:
    # Some of json's messages end in "at", meant to be followed by the position ("Invalid control
    # character at"); the position goes first here, once.
    msg = e.msg
    if msg.endswith(" starting at"):
        msg = msg[: -len(" at")] + " here"
    elif msg.endswith(" at"):
        msg = msg[: -len(" at")]
    return f"invalid JSON at column {e.colno}: {msg[:1].lower()}{msg[1:]}"


def _csv_rows(path: Path, rel: str):
    bad = _utf8_error_offset(path)
    if bad is not None:
        yield Rejected(rel, None, "(file)", f"not valid UTF-8 (byte offset {bad})")
        return
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8-sig", newline="") as f:  # streamed, row by row
        yield from _csv_dict_rows(csv.DictReader(f, delimiter=delimiter), rel)


def _utf8_error_offset(path: Path) -> int | None:
    """Where the file stops being UTF-8 (counted after a BOM, as decoding with utf-8-sig counts),
    or None; read in 1 MB chunks, so a whole file is rejected before any of its rows is read."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, bom = 0, 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            if offset == 0 and chunk.startswith(codecs.BOM_UTF8):
                bom = len(codecs.BOM_UTF8)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                return offset - pending + e.start - bom
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as e:
            return offset - len(e.object) + e.start - bom
    return None


def _csv_dict_rows(reader: csv.DictReader, rel: str):
    for row in reader:
        if None in row:
            yield Rejected(rel, reader.line_num, "(line)", "more values than header columns")
            continue
        obj = {k: v for k, v in row.items() if v not in (None, "")}
        for key in ("messages", "input", "labels", "tools", "chosen", "rejected"):
            value = obj.get(key)
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    obj[key] = json.loads(value)
                except json.JSONDecodeError:
                    pass  # left as a string; validation says what is wrong
        yield reader.line_num, obj, json.dumps(row)[:2000], reader.fieldnames


def _parquet_rows(path: Path, rel: str):
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=4096)  # streamed, a batch at a time
        n = 0
        for batch in batches:
            for row in batch.to_pylist():
                n += 1
                yield n, {k: v for k, v in row.items() if v is not None}, ""
    except Exception as e:  # pyarrow raises several types for corrupt files
        yield Rejected(rel, None, "(file)", f"not a readable Parquet file: {e}")


def to_record(obj: dict, line: int, source: str, rel: str, kind: str | None, fields: dict) -> Record:
    for ours, theirs in fields.items():
        if theirs in obj:
            obj[ours] = obj.pop(theirs)
    rid = obj.get("id", f"{source}:{line}")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid).strip() == "":
        raise Bad("id", "must be a non-empty string or an integer")
    detected, content = _shape(obj)
    if kind and detected != kind:
        raise Bad("(line)", f"expected a {kind} record, found fields of a {detected} record")
    meta = {"source": source, "path": rel, "line": line}
    label = obj.get("label")
    if label is not None:
        meta["label"] = str(label)
    if isinstance(obj.get("tags"), list):
        meta["tags"] = [str(t) for t in obj["tags"]]
    return Record(str(rid), detected, content, meta)


def _shape(obj: dict) -> tuple[str, dict]:
    if "messages" in obj:
        content = {"messages": _messages(obj["messages"], "messages")}
        if "tools" in obj:
            if not isinstance(obj["tools"], list):
                raise Bad("tools", "must be a list")
            content["tools"] = obj["tools"]
        return "chat", content
    if "instruction" in obj:
        instruction = _text(obj, "instruction")
        extra = obj.get("input") or ""
        if not isinstance(extra, str):
            raise Bad("input", "must be a string")
        messages = [{"role": "system", "content": _text(obj, "system")}] if obj.get("system") else []
        messages += [{"role": "user", "content": instruction + ("\n\n" + extra if extra.strip() else "")},
                     {"role": "assistant", "content": _text(obj, "output")}]
        return "chat", {"messages": messages}
    if "chosen" in obj or "rejected" in obj:
        prompt = obj.get("prompt")
        prompt = _messages(prompt, "prompt") if isinstance(prompt, list) else _text(obj, "prompt")
        return "preference", {"prompt": prompt, "chosen": _answer(obj, "chosen"), "rejected": _answer(obj, "rejected")}
    if "prompt" in obj and "completion" in obj:
        return "chat", {"messages": [{"role": "user", "content": _text(obj, "prompt")},
                                     {"role": "assistant", "content": _text(obj, "completion")}]}
    if "text" in obj:
        return "text", {"text": _text(obj, "text")}
    if "input" in obj:
        value = obj["input"]
        messages = [{"role": "user", "content": _text(obj, "input")}] if isinstance(value, str) else _messages(value, "input")
        reference = obj.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise Bad("reference", "must be a string")
        labels = obj.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise Bad("labels", "must be a list of strings")
        return "eval", {"input": messages, "reference": reference, "labels": labels}
    raise NoKnownFields()


class NoKnownFields(Exception):
    """A row with none of the fields `_shape` reads; the reader names what is missing."""


# What `_shape` reads, in the order a message suggests them: the first column a row needs, and the rest.
SHAPES = [("text", ()), ("messages", ()), ("instruction", ("output",)), ("prompt", ("completion",)),
          ("prompt", ("chosen", "rejected")), ("input", ())]
EXPECTED = ", ".join(" + ".join((first, *rest)) for first, rest in SHAPES[:-1]) + f" or {SHAPES[-1][0]}"


def _record(obj: dict, line: int, source: str, rel: str, kind: str | None, fields: dict,
            header: list[str] | None) -> Record:
    """`to_record`, with the reasons a CSV row fails put in terms of its columns."""
    keys = sorted(obj)
    try:
        return to_record(obj, line, source, rel, kind, fields)
    except NoKnownFields:
        raise (_csv_missing(header, fields) if header is not None else
               Bad("(line)", f"no known fields (found: {', '.join(keys) or 'none'}); expected {EXPECTED}")) from None
    except Bad as e:
        column = fields.get(e.field, e.field)
        if header is not None and e.reason == "missing" and column in header:
            raise Bad(column, "missing: the column is empty on this row") from None
        raise


def _csv_missing(header: list[str] | None, fields: dict) -> Bad:
    """A CSV row that `_shape` could not read: a known column left empty on it, or a header with none."""
    columns = [c for c in header or [] if c]
    ours = {theirs: mine for mine, theirs in fields.items()}
    known = {first for first, _ in SHAPES} | {"chosen", "rejected"}
    for column in columns:
        if ours.get(column, column) in known:
            return Bad(column, "missing: the column is empty on this row")
    return Bad("(header)", f"no known column among {', '.join(columns) or '(none)'}; expected a {EXPECTED} column; "
                           f"map yours to ours with the source's `fields`, e.g. `--field text={columns[0] if columns else 'body'}`")


def _text(obj: dict, key: str) -> str:
    if key not in obj:
        raise Bad(key, "missing")
    if not isinstance(obj[key], str):
        raise Bad(key, f"must be a string, got {type(obj[key]).__name__}")
    if not obj[key].strip():
        raise Bad(key, "is empty")
    return obj[key]


def _answer(obj: dict, key: str) -> str:
    """A preference answer: a string, or a TRL-style list of messages ending with the assistant's."""
    value = obj.get(key)
    if isinstance(value, list):
        msgs = _messages(value, key)
        return msgs[-1]["content"]
    return _text(obj, key)


def _messages(value, key: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise Bad(key, "must be a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise Bad(f"{key}[{i}]", "must be an object with role and content")
        if m.get("role") not in ROLES:
            raise Bad(f"{key}[{i}].role", f"unknown role {m.get('role')!r}; expected one of {', '.join(ROLES)}")
        content = m.get("content")
        if content is None and m.get("tool_calls"):
            out.append({k: v for k, v in m.items() if k in ("role", "content", "tool_calls", "name")})
            continue
        if not isinstance(content, str):
            raise Bad(f"{key}[{i}].content", f"must be a string, got {type(content).__name__}")
        out.append({k: v for k, v in m.items() if k in ("role", "content", "tool_calls", "tool_call_id", "name")})
    return out
