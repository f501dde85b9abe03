"""Which documents the RAG index holds: prepared text datasets when they exist, else the raw
document sources read directly. Unreadable files are reported with their reason and skipped."""

from tailorlm.data.record import Record
from tailorlm.errors import TailorError


def index_documents(project, names: list[str] | None = None) -> tuple[list[Record], list[dict]]:
    """(documents, skipped) for the named sources, or for `rag.sources`, or every text source."""
    from tailorlm.data.pipeline import read_sources
    from tailorlm.data.readers.records import detect_format
    from tailorlm.data.versions import load_records, resolve
    from tailorlm.registry.resolve import alias_target

    configured = {s.name: s for s in project.config.sources}
    names = names or project.config.rag.sources or [
        s.name for s in configured.values()
        if s.kind == "text" or s.format == "docs" or (s.kind is None and detect_format(project.root / s.path) == "docs")]
    unknown = [n for n in names if n not in configured]
    if unknown:
        raise TailorError(f"unknown source {', '.join(unknown)}; sources: {', '.join(configured) or '(none)'}")
    if not names:
        raise TailorError("no document sources to index; add one with `tailor data add docs path/to/docs/`")
    docs, skipped = [], []
    for name in names:
        if alias_target(project, "dataset", name, "latest"):
            manifest = resolve(project, name)
            if manifest["kind"] != "text":
                raise TailorError(f"dataset {manifest['id']} holds {manifest['kind']} records; the index takes documents (text)")
            docs += load_records(project, manifest)
            continue
        records, rejected, _ = read_sources(project, [configured[name]])
        if any(r.kind != "text" for r in records):
            raise TailorError(f"source {name!r} holds {records[0].kind} records; the index takes documents (text)")
        docs += records
        skipped += [{"file": q["file"], "reason": q["reason"]} for q in rejected]
    return docs, skipped
