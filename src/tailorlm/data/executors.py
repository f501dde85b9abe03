"""Running `tailor data prepare` on datatrove's executors: local processes, Slurm or Ray.

The work is split in three stages, so that a crash at any point loses at most one task, and every
stage streams (one record at a time in memory, as in-process `prepare` does):
1. in-process: read the sources and write them as N shard files (skipped when already written);
2. on the executor: each task runs the per-record steps (validate, normalize, quality, language,
   pii, toxicity, decontaminate, perplexity) over its shard and writes its survivors, its
   quarantine and its step counts. datatrove marks finished tasks, so a rerun runs only the rest;
3. in-process: merge the shards in order, run the corpus-wide steps (exact, near and line dedup,
   mix, split) and write the dataset version.

Per-record steps therefore run before the corpus-wide ones, whatever their order in tailor.yaml;
the manifest lists them in the order they ran. Ray runs for real: on the cluster at `--address` or
RAY_ADDRESS, else on a local instance started for the run (`ray_cluster`). With `--dry-run`, Slurm and
Ray write their launch configuration (sbatch script, pickled executor, JSON) without submitting anything.
"""

import contextlib
import hashlib
import itertools
import json
import os
import shutil
from collections import Counter
from pathlib import Path

from tailorlm.data.record import Record
from tailorlm.errors import TailorError

GLOBAL_STEPS = {"exact_dedup", "near_dedup", "line_dedup", "mix", "split"}


def _datatrove_step():
    """The datatrove PipelineStep that runs Tailor's per-record steps on one shard. Defined lazily:
    datatrove is slow to import and only needed here."""
    from datatrove.pipeline.base import PipelineStep

    class TailorShard(PipelineStep):
        name = "tailor per-record steps"
        type = "Tailor"

        def __init__(self, project_root: str, dataset: str, kind: str, work_dir: str):
            super().__init__()
            self.project_root, self.dataset, self.kind, self.work_dir = project_root, dataset, kind, work_dir

        def run(self, data=None, rank: int = 0, world_size: int = 1):
            from tailorlm.data.pipeline import build_steps, chain_steps, step_specs
            from tailorlm.project import Project

            project = Project.load(self.project_root)
            local = {name for name, _ in step_specs(project)} - GLOBAL_STEPS
            steps = build_steps(project, self.dataset, self.kind, only=local)
            work = Path(self.work_dir)
            out = work / "out"
            out.mkdir(exist_ok=True)
            counts = {"in": 0, "kept": 0}

            def shard_records():
                with open(work / "shards" / f"{rank:05d}.jsonl", encoding="utf-8") as f:
                    for line in f:
                        counts["in"] += 1
                        yield Record.from_dict(json.loads(line))

            # Streamed: survivors and quarantine are written line by line, aside, and renamed; the
            # summary `NNNNN.json` is written last, so a killed task leaves no output that looks done.
            kept_tmp, quarantine_tmp = out / f".{rank:05d}.kept.jsonl", out / f".{rank:05d}.quarantine.jsonl"
            with open(kept_tmp, "w", encoding="utf-8") as kept, open(quarantine_tmp, "w", encoding="utf-8") as q:
                def quarantine(entry: dict) -> None:
                    q.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")

                for record in chain_steps(steps, shard_records(), quarantine):
                    counts["kept"] += 1
                    kept.write(json.dumps(record.to_dict(), ensure_ascii=False, default=str) + "\n")
            self.stat_update("records_in", value=counts["in"])
            self.stat_update("records_kept", value=counts["kept"])
            kept_tmp.replace(out / f"{rank:05d}.kept.jsonl")
            quarantine_tmp.replace(out / f"{rank:05d}.quarantine.jsonl")
            tmp = out / f".{rank:05d}.json"
            tmp.write_text(json.dumps({"summaries": [s.summary() for s in steps]}, ensure_ascii=False, default=str))
            tmp.replace(out / f"{rank:05d}.json")
            yield from ()

    return TailorShard


def make_executor(kind: str, pipeline: list, tasks: int, workers: int, logging_dir: str, slurm: dict | None = None):
    if kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir)
    if kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        opts = {"time": "04:00:00", "partition": "cpu", "cpus_per_task": 1, "mem_per_cpu_gb": 4,
                "job_name": "tailor-data", **(slurm or {})}
        return SlurmPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, **opts)
    if kind == "ray":
        from datatrove.executor.ray import RayPipelineExecutor

        # One CPU per task, and 1 GB reserved per CPU (datatrove asks for 2): the per-record steps'
        # models (spaCy for pii, lingua) take ~0.6 GB, and a reservation above free memory queues the task.
        return RayPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir,
                                   cpus_per_task=1, mem_per_cpu_gb=1)
    raise TailorError(f"unknown executor {kind!r}; use inprocess, local, slurm or ray")


def prepare_with_executor(project, sources: list[str] | None = None, executor: str = "local", workers: int = 2,
                          tasks: int | None = None, dry_run: bool = False, slurm: dict | None = None,
                          address: str | None = None, log=lambda _m: None, on_progress=None) -> dict:
    """Prepare each chosen source on a datatrove executor; returns what ran or what was written.
    `address` (or RAY_ADDRESS) is the Ray cluster to run on; without either, a local one is started.
    `on_progress(task, done, total)` (tailorlm.progress) counts the records read into shards ("prepare
    NAME") and the executor's finished tasks ("prepare NAME: tasks").

    >>> prepare_with_executor(project, ["tickets"], executor="local", workers=2)  # doctest: +SKIP
    """
    from tailorlm.data.writer import VersionWriter

    configured = {s.name: s for s in project.config.sources}
    chosen = [configured[s] for s in sources] if sources else list(configured.values())
    tasks = tasks or max(workers, 1)
    results = []
    for source in chosen:
        with VersionWriter(project, source.name) as out:
            results.append(_prepare_source(project, source, out, executor, workers, tasks, dry_run, slurm, address, log,
                                           on_progress))
    return {"datasets": results}


def _prepare_source(project, source, out, executor: str, workers: int, tasks: int, dry_run: bool,
                    slurm: dict | None, address: str | None, log, on_progress=None) -> dict:
    """One source through the three stages, streamed: the reader into shard files, the shards
    through the workers, their survivors through the corpus-wide steps into `out`."""
    from tailorlm.data.pipeline import SourceReader, build_steps, chain_steps, finish_stream, first_kind, reporting_reads

    reader = SourceReader(project, [source], out.quarantine)
    kind, records = first_kind(source.name, reader.records(), [source])
    files = reader.files  # complete once the first record has been read
    # "stream-1": the shard and output layout; a work folder of an older layout is not reused.
    recipe = json.dumps([files[source.name], project.config.data.model_dump(), tasks, "stream-1"], sort_keys=True,
                        default=str)
    work = project.artifacts("runs") / f"data-{source.name}-{hashlib.sha256(recipe.encode()).hexdigest()[:10]}"
    _write_shards(work, reporting_reads(records, reader, on_progress, f"prepare {source.name}"), tasks)
    pipeline = [_datatrove_step()(str(project.root), source.name, kind, str(work))]
    ex = make_executor(executor, pipeline, tasks, workers, str(work / "logs"), slurm)
    if dry_run:
        return {"dataset": source.name, "executor": executor, "dry_run": True, "tasks": tasks,
                **_write_launch_config(ex, executor, work)}
    log(f"{source.name}: {tasks} tasks on the {executor} executor (finished tasks are skipped)")
    if on_progress:
        on_progress(f"prepare {source.name}: tasks", tasks - len(ex.get_incomplete_ranks()), tasks)
    if executor == "ray":
        with ray_cluster(address, workers, log):
            ex.run()
    else:
        ex.run()
    pending = ex.get_incomplete_ranks()
    if on_progress:
        on_progress(f"prepare {source.name}: tasks", tasks - len(pending), tasks)
    if pending and executor == "ray":
        # Ray runs the tasks to the end before run() returns, so an unfinished one has failed.
        raise TailorError(f"{len(pending)} of {tasks} Ray tasks failed (ranks {pending}); their logs are in "
                          f"{work / 'logs' / 'logs'}. Rerun the same command: finished tasks are kept")
    if pending:
        return {"dataset": source.name, "executor": executor, "submitted": True, "pending_tasks": pending,
                "work_dir": str(work), "next": "rerun the same command when the tasks have finished"}
    summaries = []
    for rank in range(tasks):
        summaries.append(json.loads((work / "out" / f"{rank:05d}.json").read_text(encoding="utf-8"))["summaries"])
        for entry in _jsonl(work / "out" / f"{rank:05d}.quarantine.jsonl"):
            out.quarantine(entry)
    merged = _merge_summaries(summaries)
    steps = build_steps(project, source.name, kind)
    global_steps = [st for st in steps if st.name in GLOBAL_STEPS]  # the others ran on the workers
    kept = (Record.from_dict(d) for rank in range(tasks) for d in _jsonl(work / "out" / f"{rank:05d}.kept.jsonl"))
    for record in chain_steps(global_steps, kept, out.quarantine):
        out.add(record)
    ran = merged + [s.summary() for s in global_steps]
    # The recipe, which the version id hashes, is the in-process prepare's: the steps as tailor.yaml lists
    # them, with their parameters as built here (the workers' copies went through JSON, which turns the
    # quality step's int n-gram keys into strings and so reorders them). The same records from the same
    # recipe are then the same version on every executor.
    recipe = {"sources": {source.name: [f["sha256"] for f in files[source.name]]},
              "steps": [{"step": st.name, "params": st.summary()["params"]} for st in steps]}
    manifest = finish_stream(project, source.name, [source], kind, files, reader.n_read, reader.rejected, out, ran,
                             extra={"executor": {"kind": executor, "tasks": tasks, "workers": workers},
                                    "recipe": recipe})
    return {"dataset": source.name, "executor": executor, "id": manifest["id"], "splits": manifest["splits"],
            "accounting": manifest["accounting"], "work_dir": str(work)}


def _jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


@contextlib.contextmanager
def ray_cluster(address: str | None, workers: int, log=lambda _m: None):
    """Ray, connected: to `address` (or RAY_ADDRESS) when given, else to a local instance with `workers`
    CPUs, started here and stopped after. A driver already connected (ray.init in this process) is used as is.

    >>> with ray_cluster("ray://head:10001", workers=2): ...  # doctest: +SKIP
    """
    try:
        import ray
    except ImportError as e:
        raise TailorError("the ray executor needs Ray: pip install 'tailorlm[ray]'") from e
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        log(f"connecting to the Ray cluster at {address}")
        kwargs = {"address": address}
    else:
        log(f"starting a local Ray instance with {workers} CPUs")
        # The object store holds only the pickled executor and task results here; Ray's default
        # (30% of RAM in /dev/shm) would take memory the tasks need.
        kwargs = {"num_cpus": workers, "object_store_memory": 128 * 1024**2}
    try:
        ray.init(include_dashboard=False, logging_level="WARNING", **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise TailorError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {e}") from e
    try:
        yield
    finally:
        ray.shutdown()


def _write_shards(work: Path, records, tasks: int) -> None:
    """Contiguous shards of the records, streamed: they go to one file first (their number is
    not known before the end), which is then cut into `tasks` files. Contiguous shards keep input
    order when merged back, so dedup keeps the same first records. Shards written by an earlier,
    interrupted run of the same recipe are kept; the records are still read, for the accounting."""
    shards = work / "shards"
    if shards.exists() and len(list(shards.glob("*.jsonl"))) == tasks:
        for _ in records:
            pass
        return
    tmp = work / ".shards"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = 0
    with open(tmp / "all.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False, default=str) + "\n")
            n += 1
    size = -(-n // tasks) if n else 0
    with open(tmp / "all.jsonl", encoding="utf-8") as lines:
        for rank in range(tasks):
            with open(tmp / f"{rank:05d}.jsonl", "w", encoding="utf-8") as f:
                f.writelines(itertools.islice(lines, size))
    (tmp / "all.jsonl").unlink()
    shutil.rmtree(shards, ignore_errors=True)
    tmp.rename(shards)


def _merge_summaries(per_rank: list[list[dict]]) -> list[dict]:
    merged = []
    for parts in zip(*per_rank):
        dropped, stats = Counter(), Counter()
        for p in parts:
            dropped.update(p["dropped"])
            stats.update({k: v for k, v in p["stats"].items() if isinstance(v, (int, float))})
        out = {"step": parts[0]["step"], "params": parts[0]["params"], "kept": sum(p["kept"] for p in parts),
               "dropped": dict(sorted(dropped.items())), "stats": dict(sorted(stats.items()))}
        overlaps = [o for p in parts for o in p.get("overlaps", [])]
        if overlaps:
            out["overlaps"] = overlaps[:100]
        merged.append(out)
    return merged


def _write_launch_config(ex, kind: str, work: Path) -> dict:
    import dill

    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "executor.pik", "wb") as f:
        dill.dump(ex, f)
    written = {"executor_pickle": str(logs / "executor.pik")}
    if kind == "slurm":
        script = ex.get_launch_file_contents(ex.get_sbatch_args(ex.tasks),
                                             f"srun -l launch_pickled_pipeline {logs / 'executor.pik'}")
        (logs / "launch_script.slurm").write_text(script)
        written["launch_script"] = str(logs / "launch_script.slurm")
    elif kind == "ray":
        (logs / "launch_ray.py").write_text(
            "# Run on a machine attached to the Ray cluster (ray.init() finds it from RAY_ADDRESS).\n"
            "import dill\n"
            f"executor = dill.load(open({str(logs / 'executor.pik')!r}, 'rb'))\n"
            "executor.run()\n")
        written["launch_script"] = str(logs / "launch_ray.py")
    (logs / "executor.json").write_text(json.dumps(
        {"kind": kind, "tasks": ex.tasks, "workers": ex.workers, "logging_dir": str(logs),
         **({k: getattr(ex, k) for k in ("partition", "time", "cpus_per_task", "mem_per_cpu_gb", "job_name")
             if hasattr(ex, k)})}, indent=2, default=str))
    written["executor_json"] = str(logs / "executor.json")
    return written
