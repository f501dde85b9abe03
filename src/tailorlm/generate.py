"""Batch generation over a JSONL file: `tailor generate in.jsonl out.jsonl`.

Each input line is a conversation (`messages`), a plain `prompt`, or an eval record (`input`).
Output lines are appended batch by batch and flushed, so a crash loses at most the batch in
flight; a rerun skips every id already in the output. Bad lines are reported with file:line and
the reason, written to `<out>.rejected.jsonl`, and never stop the valid ones.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tailorlm.errors import TailorError
from tailorlm.models.base import GenParams

ROLES = {"system", "user", "assistant", "tool"}


@dataclass
class Request:
    id: str
    messages: list[dict]
    reference: str | None = None


@dataclass
class Rejected:
    line: int
    field: str
    reason: str

    def where(self, path: Path) -> str:
        return f"{path}:{self.line}: {self.field}: {self.reason}"


def read_requests(path: Path) -> tuple[list[Request], list[Rejected]]:
    """Parse every line of `path`; valid requests and rejected lines, in file order."""
    requests, rejected, seen = [], [], set()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TailorError(f"cannot read {path}: {e.strerror or e}") from e
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            req = _parse(line.decode("utf-8-sig" if n == 1 else "utf-8"), n)
        except _Bad as e:
            rejected.append(Rejected(n, e.field, e.reason))
            continue
        except UnicodeDecodeError as e:
            rejected.append(Rejected(n, "(line)", f"not UTF-8 ({e.reason} at byte {e.start})"))
            continue
        if req.id in seen:
            rejected.append(Rejected(n, "id", f"duplicate id {req.id!r}"))
            continue
        seen.add(req.id)
        requests.append(req)
    return requests, rejected


class _Bad(Exception):
    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason


def _parse(text: str, n: int) -> Request:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        from tailorlm.data.readers.records import json_reason

        raise _Bad("(line)", json_reason(e)) from None
    if not isinstance(obj, dict):
        raise _Bad("(line)", f"expected a JSON object, got {type(obj).__name__}")
    rid = obj.get("id", f"line-{n}")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise _Bad("id", "must be a string or an integer")
    if "messages" in obj or "input" in obj:
        key = "messages" if "messages" in obj else "input"
        messages = obj[key]
        if not isinstance(messages, list) or not messages:
            raise _Bad(key, "must be a non-empty list of {role, content} objects")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise _Bad(f"{key}[{i}].role", f"must be one of {sorted(ROLES)}")
            if not isinstance(m.get("content"), str):
                raise _Bad(f"{key}[{i}].content", "must be a string")
        reference = obj.get("reference")
        # A fine-tuning record ends with the answer: generate a fresh one, keep the old as reference.
        if messages[-1]["role"] == "assistant":
            reference = messages[-1]["content"]
            messages = messages[:-1]
            if not messages:
                raise _Bad(key, "has only an assistant message; nothing to answer")
        return Request(str(rid), messages, reference if isinstance(reference, str) else None)
    if "prompt" in obj:
        if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
            raise _Bad("prompt", "must be a non-empty string")
        return Request(str(rid), [{"role": "user", "content": obj["prompt"]}])
    raise _Bad("(line)", "needs `messages`, `input` or `prompt`")


def done_ids(path: Path) -> set[str]:
    """Ids already written to an output file. A last line cut off by a crash is removed."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    keep = data if data.endswith(b"\n") or not data else data[: data.rfind(b"\n") + 1]
    if keep != data:
        path.write_bytes(keep)
    return {json.loads(line)["id"] for line in keep.splitlines() if line.strip()}


def generate_file(src: Path, dest: Path, generator, params: GenParams | None = None, batch_size: int = 8,
                  on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Answer every request in `src`, appending results to `dest`; returns counts and paths.

    >>> generate_file(Path("in.jsonl"), Path("out.jsonl"), generator)  # doctest: +SKIP
    {'total': 3, 'skipped': 0, 'generated': 3, 'rejected': 0, ...}
    """
    src, dest = Path(src), Path(dest)
    params = params or GenParams()
    requests, rejected = read_requests(src)
    already = done_ids(dest)
    todo = [r for r in requests if r.id not in already]
    rejected_path = dest.with_name(dest.name + ".rejected.jsonl")
    if rejected:
        with open(rejected_path, "w", encoding="utf-8") as f:
            for r in rejected:
                f.write(json.dumps({"file": str(src), "line": r.line, "field": r.field, "reason": r.reason}) + "\n")
    elif rejected_path.exists():
        rejected_path.unlink()
    if on_progress:
        on_progress(0, len(todo))
    tokens = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "a", encoding="utf-8") as out:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            completions = generator.generate_batch([r.messages for r in batch], params, batch_size=batch_size)
            for req, c in zip(batch, completions):
                row = {"id": req.id, "messages": req.messages, "completion": c.text, "finish_reason": c.finish_reason,
                       "usage": c.usage.to_dict(), "model": c.model}
                if req.reference is not None:
                    row["reference"] = req.reference
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                tokens += c.usage.completion_tokens
            out.flush()
            os.fsync(out.fileno())
            if on_progress:
                on_progress(len(batch), len(todo))
    return {"input": str(src), "output": str(dest), "total": len(requests), "skipped": len(requests) - len(todo),
            "generated": len(todo), "rejected": len(rejected), "rejected_path": str(rejected_path) if rejected else None,
            "completion_tokens": tokens, "problems": [r.where(src) for r in rejected]}

