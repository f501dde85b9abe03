"""`tailor data export`: a dataset version in the formats other tools read.

- `openai`: OpenAI fine-tune JSONL (`messages`), which Axolotl, LLaMA-Factory and TRL also read;
  preference records as `prompt/chosen/rejected`, text as `text`, eval as `input/reference/labels`.
- `alpaca`: `instruction/input/output` (single-turn chat records only; others are refused).
- `hf`: a Hugging Face `datasets` folder (`save_to_disk`), one split per dataset split.
"""

import json
from pathlib import Path

from tailorlm.data.record import Record
from tailorlm.data.versions import load_records, resolve
from tailorlm.errors import TailorError


def to_openai(r: Record) -> dict:
    return {"id": r.id, **r.content}


def to_alpaca(r: Record) -> dict:
    if r.kind != "chat":
        raise TailorError(f"Alpaca export takes chat records; {r.id} is {r.kind}")
    msgs = r.content["messages"]
    system = [m["content"] for m in msgs if m["role"] == "system"]
    turns = [m for m in msgs if m["role"] != "system"]
    if len(turns) != 2 or [m["role"] for m in turns] != ["user", "assistant"]:
        raise TailorError(f"Alpaca holds one user turn and one answer; {r.id} has {len(turns)} turns (use --format openai)")
    row = {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"]}
    if system:
        row["system"] = system[0]
    return row


def export_version(project, ref: str, out: Path, fmt: str = "openai", split: str | None = None) -> dict:
    manifest = resolve(project, ref)
    records = load_records(project, manifest, split)
    out = Path(out)
    if fmt in ("openai", "alpaca"):
        convert = to_openai if fmt == "openai" else to_alpaca
        rows = [convert(r) for r in records]  # convert all first: a refusal writes nothing
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif fmt == "hf":
        from datasets import Dataset, DatasetDict

        splits = [split] if split else list(manifest["splits"])
        DatasetDict({s: Dataset.from_list([to_openai(r) for r in load_records(project, manifest, s)])
                     for s in splits}).save_to_disk(str(out))
    else:
        raise TailorError(f"unknown export format {fmt!r}; use openai, alpaca or hf")
    return {"id": manifest["id"], "format": fmt, "split": split, "records": len(records), "path": str(out)}
