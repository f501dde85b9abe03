"""`tailor data prepare`: read sources, run the steps, write a dataset version, streaming.

Records go one at a time from the readers (`SourceReader`) through the steps (`chain_steps`) into
the version's Parquet files (`writer.VersionWriter`); the quarantine is appended as it grows.
Corpus-wide steps keep compact state (hashes, band keys, labels) and park records on disk, so
peak memory stays flat as the corpus grows (docs/scaling.md).

The accounting always holds and is checked on every run:
    records read + records added (up-sampling) = records kept + records quarantined
where "quarantined" counts the lines and files the readers rejected and every record a step
dropped, by step and reason.
"""

import glob
import itertools
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tailorlm.data.readers.records import Rejected, detect_format, read_file
from tailorlm.data.record import Record
from tailorlm.data.steps import DEFAULT_STEPS, step_class
from tailorlm.errors import TailorError
from tailorlm.paths import inside, sha256_file
from tailorlm.registry.resolve import alias_target, aliases

# Steps that only make sense for some kinds; other records pass through them untouched.
APPLIES_TO = {
    "line_dedup": {"text"},
    "split": {"chat", "preference"},
    "decontaminate": {"chat", "preference", "text"},
    "mix": {"chat", "preference", "text"},
}


def prepare(project, sources: list[str] | None = None, name: str | None = None,
            log: Callable[[str], None] = lambda _m: None, on_progress=None) -> list[dict]:
    """Prepare every source (or the named ones) into dataset versions; returns their manifests.

    >>> prepare(Project.load(), ["tickets"])[0]["id"]  # doctest: +SKIP
    'tickets@3f9a1c'

    With `name`, the chosen sources (of one kind) become one dataset of that name. `on_progress(task,
    done, total)` (tailorlm.progress) counts each dataset's records read, as "prepare NAME".
    """
    configured = {s.name: s for s in project.config.sources}
    if not configured:
        raise TailorError("tailor.yaml has no sources; add one with `tailor data add NAME PATH`")
    unknown = [s for s in sources or [] if s not in configured]
    if unknown:
        raise TailorError(f"unknown source {', '.join(unknown)}; sources: {', '.join(configured)}")
    chosen = [configured[s] for s in sources] if sources else list(configured.values())
    groups = [(name, chosen)] if name else [(s.name, [s]) for s in chosen]
    return [prepare_dataset(project, dataset, group, log, on_progress) for dataset, group in groups]


def prepare_dataset(project, name: str, sources: list, log=lambda _m: None, on_progress=None) -> dict:
    """One dataset version from `sources`, streamed: records flow one at a time from the readers
    through the steps into the version's Parquet files, so memory does not grow with the corpus
    (corpus-wide steps keep compact state and park records on disk; docs/scaling.md)."""
    from tailorlm.data.writer import VersionWriter

    log(f"{name}: reading {', '.join(s.name for s in sources)}")
    with VersionWriter(project, name) as out:
        reader = SourceReader(project, sources, out.quarantine)
        kind, records = first_kind(name, reader.records(), sources)
        records = reporting_reads(records, reader, on_progress, f"prepare {name}")
        steps = build_steps(project, name, kind)
        for record in chain_steps(steps, records, out.quarantine, lambda step: log(f"{name}: {step}")):
            out.add(record)
        return finish_stream(project, name, sources, kind, reader.files, reader.n_read, reader.rejected, out,
                             [s.summary() for s in steps])


def dataset_kind(name: str, records: list[Record], sources: list) -> str:
    kinds = {r.kind for r in records}
    if len(kinds) > 1:
        raise TailorError(f"dataset {name!r} would mix kinds {sorted(kinds)}; prepare those sources separately")
    return kinds.pop() if kinds else (sources[0].kind or "text")


def first_kind(name: str, records: Iterator[Record], sources: list) -> tuple[str, Iterator[Record]]:
    """The dataset's kind, from its first record (or the source's, when there is none), and the
    records again, checked as they pass: a record of another kind stops the run with the error
    `dataset_kind` gives, before any version is written."""
    first = next(records, None)
    kind = first.kind if first is not None else (sources[0].kind or "text")

    def checked() -> Iterator[Record]:
        for r in itertools.chain([first] if first is not None else [], records):
            if r.kind != kind:
                dataset_kind(name, [first, r], sources)
            yield r

    return kind, checked()


PROGRESS_EVERY = 500  # records read between progress reports: often enough for a bar, rarely enough to cost nothing


def reporting_reads(records: Iterator[Record], reader: "SourceReader", on_progress, task: str) -> Iterator[Record]:
    """The records as they are, reporting `on_progress(task, read, None)` at the start and every
    PROGRESS_EVERY records, and `(task, read, read)` once the last is read (`read` counts the rejected too)."""
    if on_progress is None:
        yield from records
        return
    on_progress(task, reader.n_read, None)
    for i, record in enumerate(records, start=1):
        if i % PROGRESS_EVERY == 0:
            on_progress(task, reader.n_read, None)
        yield record
    on_progress(task, reader.n_read, reader.n_read)


def chain_steps(steps: list, records: Iterable[Record], quarantine: Callable[[dict], None],
                on_step=lambda _name: None) -> Iterator[Record]:
    """The steps chained as generators over the records; every drop goes to `quarantine(entry)` with
    step and reason as it happens. Nothing is held here: the records flow through one at a time."""

    def sink(record: Record, step: str, reason: str) -> None:
        quarantine({"step": step, "reason": reason, "id": record.id, "file": record.meta.get("path"),
                    "line": record.meta.get("line"), "record": record.content, "meta": record.meta})

    stream = iter(records)
    for step in steps:
        step.sink = sink
        on_step(step.name)
        stream = step(stream)
    return stream


def run_steps(steps: list, records, quarantine: list[dict], on_step=lambda _name: None) -> list[Record]:
    """`chain_steps` into lists: the survivors, and every drop appended to `quarantine`."""
    return list(chain_steps(steps, records, quarantine.append, on_step))


def finish(project, name: str, sources: list, kind: str, files: dict, n_read: int, read_rejected: int,
           kept: list[Record], summaries: list[dict], quarantine: list[dict], extra: dict | None = None) -> dict:
    """`finish_stream` for records and quarantine already in lists (curation, synthesis)."""
    from tailorlm.data.writer import VersionWriter

    with VersionWriter(project, name) as out:
        for q in quarantine:
            out.quarantine(q)
        for r in kept:
            out.add(r)
        return finish_stream(project, name, sources, kind, files, n_read, read_rejected, out, summaries, extra)


def finish_stream(project, name: str, sources: list, kind: str, files: dict, n_read: int, read_rejected: int,
                  out, summaries: list[dict], extra: dict | None = None) -> dict:
    """Check the accounting against what the `VersionWriter` holds, then register the version."""
    dropped = sum(sum(s["dropped"].values()) for s in summaries)
    added = sum(s["stats"].get("upsampled", 0) for s in summaries)
    accounting = {"read": n_read, "rejected_by_readers": read_rejected, "added": added,
                  "dropped_by_steps": dropped, "kept": out.kept}
    accounting["holds"] = n_read + added == out.kept + read_rejected + dropped
    if not accounting["holds"]:  # a bug in a step, never the user's fault: refuse to write a version
        raise RuntimeError(f"accounting broken for {name}: {accounting}")
    if not out.kept and sources:
        raise NothingKept(_nothing_kept(project, name, summaries, out.read_rejected_head))
    licences = sorted({s.license for s in sources if s.license})
    manifest = {
        "kind": kind,
        "license": licences[0] if len(licences) == 1 else (licences or None),
        "parents": [],
        "sources": [{"name": s.name, "path": s.path, "files": files[s.name]} for s in sources],
        "steps": summaries,
        "accounting": accounting,
        "recipe": {"sources": {s.name: [f["sha256"] for f in files[s.name]] for s in sources},
                   "steps": [{"step": s["step"], "params": s["params"]} for s in summaries]},
        **(extra or {}),
    }
    from tailorlm.data.versions import register_version

    return register_version(project, name, out, manifest)


class NothingKept(TailorError):
    """Sources that leave no record (empty, binary, or all dropped): no empty version replaces `latest`."""

    exit_code = 1


def _nothing_kept(project, name: str, summaries: list[dict], read_rejected: list[dict]) -> str:
    reasons = []
    for q in read_rejected[:3]:
        line = f":{q['line']}" if q.get("line") else ""
        reasons.append(f"{q['file']}{line}: {q.get('field') or '(record)'}: {q['reason']}")
    reasons += [f"{n} dropped by {s['step']} ({reason})" for s in summaries for reason, n in s["dropped"].items()]
    latest = alias_target(project, "dataset", name, "latest")
    keep = f"{latest} stays latest" if latest else "no version was written"
    return f"{name}: no records left to write a version from ({'; '.join(reasons) or 'the sources hold no records'}); {keep}"


def read_sources(project, sources) -> tuple[list[Record], list[dict], dict]:
    """All records of the given sources in a list, the quarantine entries of what could not be read,
    and each source's files with their sha256. For small inputs (rag, advise); `prepare` streams
    through `SourceReader`."""
    quarantine: list[dict] = []
    reader = SourceReader(project, sources, quarantine.append)
    records = list(reader.records())
    return records, quarantine, reader.files


class SourceReader:
    """The records of some sources, one at a time: what cannot be read goes to `reject(entry)` as
    it is met, and the reader counts what it read (`n_read` includes the rejected) and fills in each
    source's files with their sha256 (`files`)."""

    def __init__(self, project, sources: list, reject: Callable[[dict], None]):
        self.project, self.sources, self.reject = project, sources, reject
        self.files: dict[str, list[dict]] = {}
        self.n_read = self.rejected = 0

    def records(self) -> Iterator[Record]:
        """Every file is listed and hashed first, so `files` is complete once the first record (or
        the end) has come: the executors name their work folder after it."""
        from tailorlm.data.readers import docs

        root = self.project.root
        listed = [(source, _expand(root, source.path)) for source in self.sources]
        for source, paths in listed:
            self.files[source.name] = [{"path": rel, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
                                       for path, rel in paths]
        for source, paths in listed:
            for path, rel in paths:
                fmt = source.format if source.format != "auto" else detect_format(path)
                if fmt == "docs":
                    items = _read_doc(path, rel, root, source.name, docs)
                else:
                    items = read_file(path, rel, source.name, fmt, source.kind, source.fields)
                for item in items:
                    self.n_read += 1
                    if isinstance(item, Rejected):
                        self.rejected += 1
                        self.reject({"step": "read", "reason": item.reason, "file": item.file, "line": item.line,
                                     "field": item.field, "raw": item.raw})
                        continue
                    item.meta.setdefault("tags", list(source.tags))
                    if source.license:
                        item.meta["license"] = source.license
                    yield item


def _read_doc(path: Path, rel: str, root: Path, source: str, docs):
    try:
        doc = docs.read_document(path)
    except docs.DocumentError as e:
        yield Rejected(rel, None, "(file)", e.reason)
        return
    yield docs.to_record(path, doc, root, source)


def _expand(root: Path, pattern: str) -> list[tuple[Path, str]]:
    """The files a source path names: a file, a folder (recursively) or a glob, inside the project."""
    target = inside(root, pattern) if not glob.has_magic(pattern) else None
    if target is not None and target.is_file():
        paths = [target]
    elif target is not None and target.is_dir():
        paths = sorted(p for p in target.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(target).parts))
    elif target is None:
        paths = sorted(Path(p) for p in glob.glob(str(root / pattern), recursive=True) if Path(p).is_file())
        for p in paths:
            inside(root, str(p.relative_to(root)))
    else:
        raise TailorError(f"source path not found: {pattern} (relative to {root})")
    if not paths:
        raise TailorError(f"source path {pattern!r} matches no files")
    return [(p, p.relative_to(root).as_posix()) for p in paths]


def step_specs(project) -> list[tuple[str, dict]]:
    """(step name, params) in order: tailor.yaml's `data.steps`, or the defaults."""
    configured = project.config.data.steps
    if configured is None:
        return [(s, {}) for s in DEFAULT_STEPS]
    return [(name, params or {}) for item in configured for name, params in item.items()]


def build_steps(project, dataset: str, kind: str, only: set[str] | None = None) -> list:
    steps = []
    for step_name, params in step_specs(project):
        if kind not in APPLIES_TO.get(step_name, {kind}) or (only is not None and step_name not in only):
            continue
        cls = step_class(step_name)
        extra = {}
        if step_name == "validate":
            extra["count_tokens"], extra["context"] = token_counter(project)
        elif step_name == "decontaminate":
            extra["references"] = eval_references(project, dataset, params.get("files", []))
        elif step_name == "pii":  # data.pii is the project's default; the step's own params win
            extra = project.config.data.pii.model_dump(exclude=set(params))
        elif step_name == "mix" and "synthetic_max_share" not in params:
            extra["synthetic_max_share"] = project.config.synthesize.max_share
        steps.append(cls(**extra, **params))
    return steps


def token_counter(project):
    """A function counting a record's tokens with the generator's tokenizer and chat template, and
    the model's context length, when the generator is local; endpoints have no local tokenizer,
    so the check is skipped for them."""
    gen = project.config.models.generator
    if gen.backend != "local":
        return None, None
    from transformers import AutoConfig, AutoTokenizer

    from tailorlm.models.local import resolve_model_path

    path = resolve_model_path(gen.model)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=gen.trust_remote_code)
    context = getattr(AutoConfig.from_pretrained(path, trust_remote_code=gen.trust_remote_code),
                      "max_position_embeddings", None)

    def count(record: Record) -> int:
        if record.kind == "chat":
            text = tok.apply_chat_template(record.content["messages"], tokenize=False)
        else:
            text = record.joined()
        return len(tok(text, add_special_tokens=False)["input_ids"])

    return count, context


def eval_references(project, dataset: str, files: list[str]) -> list[Record]:
    """Eval examples that training data must not contain: the project's golden file, extra files,
    and the test splits of other datasets."""
    from tailorlm.data.versions import load_records, resolve

    paths = list(files)
    if project.config.eval.path:
        paths.append(project.config.eval.path)
    refs: list[Record] = []
    for p in paths:
        path = inside(project.root, p)
        if path.exists():
            refs += [r for r in read_file(path, p, "eval") if isinstance(r, Record)]
    for golden in aliases(project, "suite", alias="golden"):
        if golden.name == dataset:
            continue  # a dataset's own earlier golden split is re-drawn by this run, not a reference
        version, _, split = golden.target.partition(":")
        refs += load_records(project, resolve(project, version), split or None)
    return refs
