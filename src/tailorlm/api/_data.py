"""`tailor data ...` as library calls: sources, dataset versions and what the pipeline kept and dropped.

`tailorlm.api.prepare` (in the package itself) runs the pipeline in-process; `prepare_on` runs it on a
datatrove executor. A dataset reference is `NAME`, `NAME@latest` or `NAME@HASH` (a prefix will do).
"""

from pathlib import Path

from tailorlm.api._common import _quiet, project


def data_add(where=None, name: str = "", path: str = "", kind: str | None = None, fmt: str = "auto",
             fields: list[str] | None = None, license: str | None = None) -> dict:
    """Add a source to tailor.yaml (its comments kept); `fields` are OURS=THEIRS mappings. Returns the entry.

    >>> data_add("support", "tickets", "data/tickets.jsonl", kind="chat")["name"]  # doctest: +SKIP
    'tickets'
    """
    from tailorlm.data.sources import add_source

    return add_source(project(where), name, path, kind=kind, fmt=fmt, fields=fields or [], license=license)


def prepare_on(where=None, sources: list[str] | None = None, executor: str = "local", workers: int = 2,
               tasks: int | None = None, dry_run: bool = False, partition: str = "cpu", time: str = "04:00:00",
               address: str | None = None, log=_quiet) -> dict:
    """Prepare sources on a datatrove executor (local, slurm or ray), resumably; `dry_run` writes the launch
    config only. `partition` and `time` are Slurm's; `address` is the Ray cluster's."""
    from tailorlm.data.executors import prepare_with_executor

    return prepare_with_executor(project(where), sources or None, executor=executor, workers=workers, tasks=tasks,
                                 dry_run=dry_run, slurm={"partition": partition, "time": time}, address=address,
                                 log=log)


def data_list(where=None) -> list[dict]:
    """Every dataset version: id, name, kind, records, created_at, whether it is the name's latest, path."""
    from tailorlm.data.versions import list_versions

    return list_versions(project(where))


def data_show(where=None, ref: str = "") -> dict:
    """A version's manifest: sources, steps with parameters and counts, splits, licence, content hash."""
    from tailorlm.data.versions import resolve

    return resolve(project(where), ref)


def data_diff(where=None, a: str = "", b: str = "") -> dict:
    """Record ids added, removed and changed from version `a` to `b`, and the steps whose parameters differ."""
    from tailorlm.data.versions import diff_versions

    return diff_versions(project(where), a, b)


def data_export(where=None, ref: str = "", out: Path | str = "", fmt: str = "openai", split: str | None = None) -> dict:
    """Write a version as OpenAI fine-tune JSONL, Alpaca JSONL or (`hf`) a Hugging Face datasets folder."""
    from tailorlm.data.export import export_version

    return export_version(project(where), ref, Path(out), fmt, split)


def data_quarantine(where=None, ref: str = "", limit: int = 20) -> dict:
    """What a version's run did not keep: the total, counts by `step: reason`, the first `limit` entries."""
    from tailorlm.data.report import quarantine_summary

    return quarantine_summary(project(where), ref, limit)


def data_report(where=None, ref: str = "") -> dict:
    """A version's report (funnel, token lengths, languages, PII, near-duplicate clusters, samples), also
    written as an HTML page whose path is `html`."""
    from tailorlm.data.report import write_report

    return write_report(project(where), ref)


def data_synthesize(where=None, seeds: str | None = None, docs: list[str] | None = None, n: int = 20,
                    name: str | None = None, mix_with: str | None = None, mix: bool = True,
                    max_share: float | None = None, min_judge_score: int | None = None, seed: int = 0,
                    log=_quiet) -> dict:
    """Teacher-written records (self-instruct from `seeds`, RAFT questions from `docs`; an empty list: every
    document source), verified, tagged and capped at `max_share` of the mix; returns the new version."""
    from tailorlm.synthesize import synthesize

    return synthesize(project(where), seeds=seeds, docs=docs, n=n, name=name, mix_with=mix_with, mix=mix,
                      max_share=max_share, min_judge_score=min_judge_score, seed=seed, log=log)
