"""The README's main job: the whole ladder on an example project that ships with Tailor, offline.

It copies the example project (Keelbox, a fictional company: its documents, 400 messy support
tickets with planted duplicates, PII and boilerplate, and a golden set of 64 held-out tickets) into a
folder, then runs the journey on the embedded models:

    data prepare -> rag index -> advise -> ladder (zero-shot, few-shot, rag, LoRA sft, hybrid) -> report

Every stage is resumable: run it again after an interruption and finished stages are reused.
"""

import shutil
import time
from importlib import resources
from pathlib import Path

from tailorlm.errors import TailorError

EXAMPLE = "support"


def example_dir(name: str = EXAMPLE) -> Path:
    return Path(str(resources.files("tailorlm") / "examples" / name))


def create_example(path: Path, name: str = EXAMPLE) -> Path:
    """Copy the shipped example project to `path`, unless a project is already there."""
    path = Path(path)
    if (path / "tailor.yaml").exists():
        return path
    if path.exists() and any(path.iterdir()):
        raise TailorError(f"{path} exists and is not a Tailor project; choose an empty or new folder")
    try:
        shutil.copytree(example_dir(name), path, dirs_exist_ok=True)
    except OSError as e:
        raise TailorError(f"cannot create the example project in {path}: {e.strerror or e}") from e
    return path


def run_quickstart(path: Path | str = "tailor-quickstart", log=print, on_progress=None, rungs: list[str] | None = None) -> dict:
    """Create the example project at `path` and climb its ladder; returns the ladder report.

    >>> run_quickstart("demo")["recommendation"]["rung"]  # doctest: +SKIP
    'sft'
    """
    from tailorlm.data.pipeline import prepare
    from tailorlm.ladder.run import run_ladder
    from tailorlm.models.embedded import ensure
    from tailorlm.project import Project
    from tailorlm.rag.documents import index_documents
    from tailorlm.rag.index import RagIndex

    started = time.perf_counter()
    root = create_example(Path(path))
    project = Project.load(root)
    project.store  # state folder and database, checked writable before any model work
    log(f"[1/6] example project ready: {project.root}")

    models = project.config.models
    log(f"[2/6] embedded models: {models.generator.model}, {models.embedder.model} (fetched and converted once)")
    for cfg in (models.generator, models.embedder):
        if cfg.backend == "local":
            ensure(cfg.model)

    log("[3/6] data prepare: validate, clean, deduplicate, redact PII, decontaminate, split")
    datasets = prepare(project)
    for m in datasets:
        a = m["accounting"]
        log(f"      {m['id']}: read {a['read']}, kept {a['kept']}, quarantined "
            f"{a['rejected_by_readers'] + a['dropped_by_steps']} with reasons")

    log("[4/6] rag index: chunk and embed the documents")
    docs, _ = index_documents(project, None)
    built = RagIndex.for_project(project).build(docs)
    log(f"      {built['chunks_total']} chunks from {built['documents']} documents")

    log("[5/6] advise: which rung to try first")
    advice = _advise(project, log)

    log("[6/6] ladder: every rung on the golden set")
    ladder = run_ladder(project, only=rungs, log=log, on_progress=on_progress)
    elapsed = time.perf_counter() - started
    ladder.update(project=str(project.root), seconds=round(elapsed, 1), advice=advice,
                  datasets=[m["id"] for m in datasets])
    log(f"\nDone in {elapsed / 60:.1f} min. Report: {project.root / ladder['path']}")
    log(f"Chart: {project.root / ladder['chart_html']} (and {Path(ladder['chart_png']).name})")
    return ladder


def _advise(project, log) -> dict | None:
    try:
        from tailorlm.advise.advisor import advise
    except ImportError:
        return None
    advice = advise(project)
    reasons = "; ".join(advice.get("reasons", [])[:2])
    log(f"      next rung: {advice.get('rung')}. {reasons}"[:400])
    for gap in advice.get("missing", [])[:2]:
        log(f"      still missing: {gap}")
    return advice
