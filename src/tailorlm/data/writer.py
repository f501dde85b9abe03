"""Writing a dataset version as its records arrive: Parquet per split, quarantine as JSONL.

`tailor data prepare` streams: records go from the readers through the steps into this writer one
at a time, so a version of 1M documents never sits in memory. The writer fills a temporary folder
beside the version's final place (`.tailor/datasets/NAME/.tmp-PID@HOST@...`):
- one Parquet file per split, written `batch_size` rows at a time (pyarrow's ParquetWriter);
- the quarantine, appended entry by entry (what the readers rejected first, then the steps' drops,
  the order `quarantine.jsonl` has always had);
- per split, one line per record (`split, id, content hash`) from which `digest` computes the
  version's content hash, as `versions.version_hash` does from lists.
`versions.register_version` names the version from that hash and renames the folder into place;
on an error the folder is removed, so no half-written version is ever left.

    with VersionWriter(project, "tickets") as out:
        for record in records:
            out.add(record)
        manifest = register_version(project, "tickets", out, manifest)
"""

import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

from tailorlm.data.record import Record
from tailorlm.paths import safe_name

COLUMNS = ("id", "kind", "content", "meta")
BATCH_SIZE = 5000  # rows per Parquet write (and row group): ~10 MB of 2 kB documents


class VersionWriter:
    def __init__(self, project, name: str, batch_size: int | None = None):
        safe_name(name, "dataset name")
        self.batch_size = batch_size or BATCH_SIZE
        parent = project.artifacts("datasets") / name
        parent.mkdir(parents=True, exist_ok=True)
        # The name says whose it is, so a later run can tell a killed writer's leftovers from a live one's.
        self.tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".tmp-{os.getpid()}@{socket.gethostname()}@"))
        self.counts: dict[str, int] = {}  # split -> records, in order of first appearance
        self.read_rejected_head: list[dict] = []  # the first few reader rejections, for error messages
        self.quarantined = 0
        self._buffers: dict[str, dict[str, list[str]]] = {}  # split -> column -> values, as stored
        self._parquet: dict = {}
        self._hash_lines: dict = {}
        self._quarantine = {"read": open(self.tmp / ".quarantine-read.jsonl", "w", encoding="utf-8"),
                            "steps": open(self.tmp / ".quarantine-steps.jsonl", "w", encoding="utf-8")}

    def __enter__(self) -> "VersionWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def kept(self) -> int:
        return sum(self.counts.values())

    def open_split(self, split: str) -> None:
        """Start a split's Parquet file, even if no record comes (an empty split is still written)."""
        if split in self.counts:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.counts[split] = 0
        self._buffers[split] = {c: [] for c in COLUMNS}
        self._parquet[split] = pq.ParquetWriter(self.tmp / f"{split}.parquet",
                                                pa.schema([(c, pa.string()) for c in COLUMNS]))
        self._hash_lines[split] = open(self.tmp / f".hash-{split}", "w", encoding="utf-8")

    def add(self, record: Record, split: str | None = None) -> None:
        """Write one kept record, to `split` or the one its meta names (`data` when none)."""
        split = split or record.meta.get("split", "data")
        self.open_split(split)
        self.counts[split] += 1
        self._hash_lines[split].write(f"{split}\x00{record.id}\x00{record.content_hash()}\n")
        # Buffered as the column strings, not as records: the writer holds no Record.
        buffer = self._buffers[split]
        buffer["id"].append(record.id)
        buffer["kind"].append(record.kind)
        buffer["content"].append(json.dumps(record.content, ensure_ascii=False))
        buffer["meta"].append(json.dumps(record.meta, ensure_ascii=False, default=str))
        if len(buffer["id"]) >= self.batch_size:
            self._flush(split)

    def quarantine(self, entry: dict) -> None:
        """Append one quarantine entry (a reader's rejection when its step is `read`)."""
        read = entry.get("step") == "read"
        if read and len(self.read_rejected_head) < 3:
            self.read_rejected_head.append(entry)
        self._quarantine["read" if read else "steps"].write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        self.quarantined += 1

    def _flush(self, split: str) -> None:
        import pyarrow as pa

        columns, self._buffers[split] = self._buffers[split], {c: [] for c in COLUMNS}
        if columns["id"]:
            self._parquet[split].write_table(pa.table(columns, schema=self._parquet[split].schema))

    def digest(self, recipe: dict) -> str:
        """The version's content hash: the recipe, then every record's split, id and content hash,
        splits in sorted order (the same bytes `versions.version_hash` hashes)."""
        h = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode())
        for split in sorted(self.counts):
            self._hash_lines[split].flush()
            with open(self.tmp / f".hash-{split}", "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()

    def finish_into(self, folder: Path, manifest: dict) -> None:
        """Close every file, add the manifest and rename the folder to `folder`."""
        for split in self.counts:
            self._flush(split)
            self._parquet[split].close()
            self._hash_lines[split].close()
            os.remove(self.tmp / f".hash-{split}")
        self._parquet, self._hash_lines = {}, {}
        for f in self._quarantine.values():
            f.close()
        with open(self.tmp / "quarantine.jsonl", "wb") as out:
            for part in ("read", "steps"):
                path = self.tmp / f".quarantine-{part}.jsonl"
                with open(path, "rb") as f:
                    shutil.copyfileobj(f, out)
                os.remove(path)
        (self.tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
        os.replace(self.tmp, folder)

    def close(self) -> None:
        """Release everything; the temporary folder goes unless `finish_into` moved it into place."""
        for w in self._parquet.values():
            w.close()
        for f in [*self._hash_lines.values(), *self._quarantine.values()]:
            f.close()
        self._parquet, self._hash_lines = {}, {}
        shutil.rmtree(self.tmp, ignore_errors=True)
