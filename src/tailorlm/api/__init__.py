"""The public library API: one typed function per thing a user does. The CLI calls these and nothing else.

`import tailorlm` exposes them lazily (`tailorlm.prepare`, `tailorlm.evaluate`, `tailorlm.ladder`,
`tailorlm.train`, `tailorlm.serve`, ...), so importing Tailor loads no model library. Every function
takes a `Project`, a project folder, or None (the project around the current folder), and progress
callbacks of the one shape in `tailorlm.progress`: `on_progress(task, done, total, **info)`.

>>> import tailorlm
>>> tailorlm.prepare("support")                                   # doctest: +SKIP
>>> tailorlm.evaluate("support", "few_shot")["metrics"]["accuracy"]["mean"]  # doctest: +SKIP
0.64
>>> tailorlm.ladder("support")["recommendation"]["rung"]          # doctest: +SKIP
'sft'

The functions of a few command families live in this package's modules and are re-exported here:
`_generate` (chat, generate, the embedded models, model versions), `_data` (data add/list/show/...),
`_rag` (rag query, eval, tune), `_improve` (loop, promote, rollback, the A/B report, feedback, review
report), `_project` (init, config show/schema). `chat`, `generate` and `loop` are `tailorlm.api.chat`
and so on only: `tailorlm.chat`, `tailorlm.generate` and `tailorlm.loop` are modules.
"""

from pathlib import Path

from tailorlm.api._common import _quiet, project
from tailorlm.api._data import (data_add, data_diff, data_export, data_list, data_quarantine, data_report, data_show,
                                data_synthesize, prepare_on)
from tailorlm.api._generate import Chat, chat, embedded_models, generate, model_versions, pull_models
from tailorlm.api._improve import ab_report, feedback, loop, promote, review_report, rollback
from tailorlm.api._project import config, config_schema, init
from tailorlm.api._rag import query, rag_eval, rag_tune
from tailorlm.progress import for_task, for_training


def prepare(where=None, sources: list[str] | None = None, name: str | None = None, log=_quiet) -> list[dict]:
    """Run the data pipeline on the project's sources (or the named ones); returns the versions' manifests.

    >>> [m["id"] for m in prepare("support")]  # doctest: +SKIP
    ['tickets@3f9a1c', 'docs@77b2e0', 'golden@0c41d9']
    """
    from tailorlm.data.pipeline import prepare as run_prepare

    return run_prepare(project(where), sources or None, name=name, log=log)


def prepare_summary(manifests: list[dict]) -> dict:
    """What `data prepare` reports per version, and the inputs rejected as malformed or invalid per version
    (the readers' rejections plus the validate step's drops; non-zero means the exit code says so)."""
    out = [{"id": m["id"], "kind": m["kind"], "splits": m["splits"], "accounting": m["accounting"], "path": m["path"],
            "reused": m.get("reused", False), "dropped": {s["step"]: s["dropped"] for s in m["steps"] if s["dropped"]}}
           for m in manifests]
    invalid = {m["id"]: m["accounting"]["rejected_by_readers"] + sum(
        sum(s["dropped"].values()) for s in m["steps"] if s["step"] == "validate") for m in manifests}
    return {"datasets": out, "invalid": invalid}


def served_name(proj, model: str) -> str:
    """The served name for what a user typed: a rung name becomes PROJECT:RUNG; ids and aliases stay."""
    return model if ":" in model or "@" in model else f"{proj.config.name}:{model}"


def evaluate(where=None, model: str = "zero_shot", suite: str | None = None, metrics: list[str] | None = None,
             max_tokens: int | None = None, batch_size: int = 8, fresh: bool = False, power: bool = False,
             delta: float = 0.05, on_progress=None, pool=None) -> dict:
    """Score a rung (by name), a model version (id) or an alias (NAME@ALIAS) on a suite (default: the
    project's golden suite); returns the report, with `power` against the other reports when asked.

    >>> evaluate("support", "few_shot", metrics=["accuracy"])["metrics"]["accuracy"]["n"]  # doctest: +SKIP
    64
    """
    from tailorlm.eval.runner import default_params
    from tailorlm.eval.runner import evaluate as run_eval
    from tailorlm.eval.suite import load_suite
    from tailorlm.models.pool import ModelPool
    from tailorlm.rungs.build import rung_for_model

    proj = project(where)
    name = served_name(proj, model)
    rung = rung_for_model(proj, name, pool or ModelPool(proj))
    params = default_params(proj)
    if max_tokens:
        params.max_tokens = max_tokens
    report = run_eval(proj, rung, load_suite(proj, suite), metrics or None, params, subject=name,
                      batch_size=batch_size, fresh=fresh, on_progress=for_task(on_progress, name))
    if power:
        from tailorlm.eval.compare import power_against

        report["power"] = power_against(proj, report, delta)
    return report


def ladder(where=None, rungs: list[str] | None = None, batch_size: int = 8, delta: float | None = None,
           log=_quiet, on_progress=None, generator=None, embedder=None) -> dict:
    """Every configured rung (or the named ones) on the golden suite, compared, with a recommendation;
    `delta` asks the power analysis about another difference than eval's default.

    >>> ladder("support", ["zero_shot", "rag"])["recommendation"]["rung"]  # doctest: +SKIP
    'rag'
    """
    from tailorlm.ladder.run import run_ladder

    result = run_ladder(project(where), rungs or None, generator=generator, embedder=embedder, log=log,
                        on_progress=on_progress, batch_size=batch_size)
    return with_power(result, delta)


def with_power(result: dict, delta: float | None) -> dict:
    """A ladder with its power analysis at `delta` (kept when it was computed at that delta already)."""
    from tailorlm.eval.compare import ladder_power

    if delta is None or result.get("power", {}).get("delta") == delta:
        return result
    return {**result, "power": ladder_power(result, delta)}


def train(where=None, config=None, resume: str | bool | None = None, dry_run: bool = False, on_progress=None,
          on_message=_quiet, **fields) -> dict:
    """Train and register a model version: defaults < `config` (a config.yaml, dict or TrainConfig) < `fields`.

    `resume` continues the latest unfinished run (True) or the named one. With `launcher: accelerate` the
    run is launched (or, with `dry_run`, its config written and its command returned).

    >>> train("support", dataset="tickets", epochs=1)["model_version"]  # doctest: +SKIP
    'support:sft@v1'
    """
    from tailorlm.train.config import resolve_config
    from tailorlm.train.runs import train as run_train
    from tailorlm.train.scaleout import launch_run, pending_launched_run

    proj = project(where)
    run = resume if isinstance(resume, str) else None
    cfg = None if resume else resolve_config(config, **fields)
    if (cfg is not None and cfg.launcher == "accelerate") or (resume and pending_launched_run(proj, run)):
        return launch_run(proj, cfg, dry_run=dry_run, resume=resume or None)
    method = cfg.method if cfg else "run"
    return run_train(proj, cfg, resume=resume or None, on_progress=for_training(on_progress, f"train {method}"),
                     on_message=on_message)


def serve(where=None, host: str | None = None, port: int | None = None, backend: str = "local",
          quant: str | None = None, upstream: str | None = None, upstream_key_env: str | None = None,
          vllm_port: int = 8001, dry_run: bool = False, on_start=None, **batching) -> dict | None:
    """Serve the project's rungs and model versions through the OpenAI-compatible API until Ctrl-C.

    `backend="vllm"` launches vLLM for the base and every adapter (with `dry_run`, returns its command
    instead); `quant` serves the generator quantized; `on_start(name, url)` is told the address first.
    `batching`: max_batch, max_queue, batch_wait_ms.
    """
    from tailorlm.serve import serve as run_serve
    from tailorlm.serve.auth import load_key_hashes

    proj = _serving(where, backend, quant)
    if backend == "vllm" and dry_run:
        from tailorlm.serve.vllm import vllm_command

        return {"command": vllm_command(proj, "127.0.0.1", vllm_port)}
    cfg = proj.config.serve
    load_key_hashes(cfg.api_keys_env)  # a missing key variable fails here, before serving is announced
    if on_start:
        on_start(proj.config.name, f"http://{host or cfg.host}:{port or cfg.port}/v1")
    run_serve(proj, host, port, upstream=upstream, upstream_key_env=upstream_key_env, launch_vllm=backend == "vllm",
              vllm_port=vllm_port, **batching)
    return None


def check(where=None, report: str | None = None, url: str | None = None, concurrency: int = 1,
          quant: str | None = None, backend: str = "local", **batching) -> dict:
    """Train/serve parity: replay an eval report (default: the newest) through a server (`url`, or one
    started here) at temperature 0; `mismatched` counts the answers that differ."""
    from tailorlm.serve import check_server

    return check_server(_serving(where, backend, quant), report, url, concurrency=concurrency, **batching)


def ui(where=None, host: str = "127.0.0.1", port: int = 8765, on_start=None) -> None:
    """Serve the workbench on `host:port` until Ctrl-C, behind serve.api_keys_env's keys when it is set;
    `on_start(name, url, keys_required)` is told the address first."""
    from tailorlm.serve.auth import load_key_hashes
    from tailorlm.serve.server import serve_forever
    from tailorlm.ui.app import create_ui_app

    proj = project(where)
    keys = load_key_hashes(proj.config.serve.api_keys_env)
    if on_start:
        on_start(proj.config.name, f"http://{host}:{port}/", bool(keys))
    serve_forever(create_ui_app(proj, keys), host, port)


def _serving(where, backend: str, quant: str | None):
    from tailorlm.errors import TailorError

    proj = project(where)
    if quant is not None:
        from tailorlm.models.quant import QUANTS

        if quant not in QUANTS:
            raise TailorError(f"--quant must be one of {', '.join(QUANTS)}, not {quant!r}")
        proj.config.models.generator.quant = quant
    if backend not in ("local", "vllm"):
        raise TailorError(f"--backend must be local or vllm, not {backend!r}")
    return proj


def compare(where=None, baseline: str = "", candidate: str = "", show: int = 10) -> dict:
    """Two eval reports on the same suite: each metric's paired delta, interval and test."""
    from tailorlm.eval.compare import compare as run_compare
    from tailorlm.eval.runner import load_report

    proj = project(where)
    return run_compare(load_report(proj, baseline), load_report(proj, candidate), max_listed=show)


def gate(where=None, pairs: list[str] | list[tuple[str, str]] = (), margin: float | None = None) -> dict:
    """The regression gate over BASELINE:CANDIDATE report-id pairs (strings or tuples); `passed` says it all.

    >>> gate("support", ["rep-prod:rep-cand"])["passed"]  # doctest: +SKIP
    True
    """
    from tailorlm.errors import TailorError
    from tailorlm.eval.compare import gate as run_gate
    from tailorlm.eval.runner import load_report

    proj = project(where)
    loaded = []
    for p in pairs:
        if isinstance(p, str):
            if p.count(":") != 1:
                raise TailorError(f"{p!r}: give BASELINE:CANDIDATE report ids")
            p = tuple(p.split(":"))
        loaded.append((load_report(proj, p[0]), load_report(proj, p[1])))
    return run_gate(loaded, proj.config.eval.margin if margin is None else margin)


def report(where=None, ref: str = "", delta: float | None = None) -> dict:
    """One eval report or ladder by id, prefix or path (a ladder with its power at `delta`)."""
    from tailorlm.registry.reports import find

    found = find(project(where), ref).to_dict()
    return with_power(found, delta) if found.get("kind") == "ladder" else found


def reports(where=None) -> list[dict]:
    """Every eval and ladder report's index row, oldest first."""
    from tailorlm.registry.reports import entries

    return [e.to_dict() for e in entries(project(where))]


def quickstart(path: Path | str = "tailor-quickstart", rungs: list[str] | None = None, log=_quiet,
               on_progress=None) -> dict:
    """The example project, prepared, indexed, advised and run up the ladder, offline; returns the ladder."""
    from tailorlm.quickstart import run_quickstart

    return run_quickstart(path, log=log, on_progress=on_progress, rungs=rungs)


def advise(where=None, html: Path | str | None = None) -> dict:
    """Which rung next, why, what it lacks and what it costs; also written as an HTML page (default:
    `.tailor/reports/advice.html`), whose path is the result's `html`."""
    from tailorlm.advise.advisor import advise as run_advise
    from tailorlm.advise.report import advice_sections

    proj = project(where)
    advice = run_advise(proj)
    advice["html"] = _write_html(html or proj.artifacts("reports") / "advice.html", "Tailor advice",
                                 advice_sections(advice))
    return advice


def costs(where=None, method: str = "lora", params=None, tokens=None, model: str | None = None,
          trainable_params=None, lora_r: int = 16, epochs: float = 1.0, gpu: str | None = None,
          peak_tflops: float | None = None, mfu: float | None = None, queries_per_day: float | None = None,
          queries_per_s: float | None = None, prompt_tokens: float | None = None, completion_tokens: float | None = None,
          serve_gpu: str | None = None, pretrain_flops=None, prompts=None, num_generations: int = 4,
          html: Path | str | None = None) -> dict:
    """Training compute and money, inference per 1k queries, breakeven and Chinchilla sizing.

    Amounts take suffixes ("135M", "2M", "1e21"). What is not given comes from the project (its prices,
    `advise.gpu`, `advise.mfu`, `advise.queries_per_day`) and from the newest ladder's measured serving
    (queries/s and tokens per query); outside a project, from the defaults. `where=False`: no project.

    >>> costs(None, params="135M", tokens="2M", gpu="A100")["training"]["gpu_hours"]  # doctest: +SKIP
    """
    from tailorlm.advise.costs import costs_report, parse_amount
    from tailorlm.advise.report import cost_sections
    from tailorlm.config import PricesConfig

    proj = _project_or_none(where)
    measured = {}
    if proj is not None:
        from tailorlm.advise.facts import latest_ladder, measured_serving

        measured = measured_serving(latest_ladder(proj))
    advise_cfg = proj.config.advise if proj else None

    def amount(text):
        return parse_amount(text) if text is not None else None

    def given(value, default):
        return value if value is not None else default

    report = costs_report(
        proj.config.prices if proj else PricesConfig(), method=method, n_params=amount(params), n_tokens=amount(tokens),
        gpu=gpu or (advise_cfg.gpu if advise_cfg else None), mfu=mfu or (advise_cfg.mfu if advise_cfg else 0.4),
        trainable_params=amount(trainable_params), model_path=_model_path(model) if model else None, lora_r=lora_r,
        epochs=epochs, peak_tflops=peak_tflops,
        queries_per_day=given(queries_per_day, advise_cfg.queries_per_day if advise_cfg else None),
        queries_per_s=queries_per_s or measured.get("queries_per_s"),
        prompt_tokens=given(prompt_tokens, measured.get("prompt_tokens")),
        completion_tokens=given(completion_tokens, measured.get("completion_tokens")),
        serve_gpu=serve_gpu, pretrain_flops=amount(pretrain_flops), prompts=amount(prompts),
        num_generations=num_generations)
    if report["inference"] and measured and not queries_per_s:
        report["inference"].update(rung=measured["rung"], measured_on=measured["measured_on"])
    target = html or (proj.artifacts("reports") / "costs.html" if proj else None)
    report["html"] = _write_html(target, "Tailor costs", cost_sections(report)) if target else None
    return report


def gpus() -> list[dict]:
    """The GPU table costs are priced on: peak dense bf16 TFLOPs, memory and the datasheet."""
    from tailorlm.advise.costs import GPUS

    return [{"name": g.name, "peak_bf16_tflops": g.peak_bf16_flops / 1e12, "memory_gb": g.memory_gb, "source": g.source}
            for g in GPUS.values()]


def _project_or_none(where):
    """The project, or None outside one (costs work without a project); a named folder must be one."""
    from tailorlm.errors import ConfigError

    if where is False:
        return None
    try:
        return project(where)
    except ConfigError:
        if where is not None:
            raise
        return None


def _model_path(model: str) -> str:
    from tailorlm.models.local import resolve_model_path

    return resolve_model_path(model)


def _write_html(path: Path | str, title: str, sections) -> str:
    from tailorlm.advise.report import render_html

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(title, sections), encoding="utf-8")
    return str(path)


def index(where=None, sources: list[str] | None = None, on_progress=None) -> dict:
    """Build or update the retrieval index (only changed documents are re-embedded); returns what changed,
    with `seconds`, `chunks_per_s` and the `skipped` files. Progress is "embedding chunks" with its rate."""
    import time

    from tailorlm.rag.documents import index_documents
    from tailorlm.rag.index import RagIndex

    proj = project(where)
    docs, skipped = index_documents(proj, sources or None)
    started = time.perf_counter()

    def show(done: int, made: int, finished: bool) -> None:
        if on_progress:  # the total is known once chunking (which runs ahead of the embedder) is done
            rate = done / max(time.perf_counter() - started, 1e-9)
            on_progress("embedding chunks", done, made if finished or made > done else None, chunks_per_s=f"{rate:.1f}")

    result = RagIndex.for_project(proj).build(docs, on_progress=show)
    seconds = time.perf_counter() - started
    result["seconds"] = round(seconds, 2)
    result["chunks_per_s"] = round(result["chunks_added"] / seconds, 2) if result["chunks_added"] else None
    result["skipped"] = skipped
    return result


def runs(where=None) -> list[dict]:
    """Every training run with its status, method and dataset version, oldest first."""
    return [{"id": r["id"], "method": r["method"], "status": r["status"], "dataset": r["dataset_version"],
             "created_at": r["created_at"], "error": r["error"]}
            for r in project(where).store.select("runs", order_by="created_at")]


def run(where=None, run_id: str = "") -> dict:
    """One run: its config, loss curves (also drawn as `loss.png` beside the run) and final result."""
    import json

    from tailorlm.errors import TailorError
    from tailorlm.train.plot import png_plot

    proj = project(where)
    rows = proj.store.select("runs", id=run_id)
    if not rows:
        raise TailorError(f"no run {run_id!r}; `tailor runs list` shows them")
    row = rows[0]
    metrics = proj.store.select("run_metrics", order_by="step", run_id=run_id)
    curves = {name: [(m["step"], m["value"]) for m in metrics if m["name"] == name] for name in ("loss", "eval_loss")}
    curves = {k: v for k, v in curves.items() if v}
    png = png_plot(curves, proj.root / row["output_dir"] / "loss.png")
    result_path = proj.root / row["output_dir"] / "result.json"
    return {"id": run_id, "status": row["status"], "method": row["method"], "dataset_version": row["dataset_version"],
            "config": json.loads(row["config"]), "curves": curves, "png": str(png),
            "result": json.loads(result_path.read_text()) if result_path.exists() else None}


def export(where=None, version: str = "", out: Path | str = "", fmt: str = "merged", quant: str | None = None) -> dict:
    """Export a model version (id or NAME@ALIAS): `merged` HF safetensors, `adapter` (PEFT, for vLLM) or `gguf`.

    >>> export("support", "support@production", "out/", "adapter")["model_version"]  # doctest: +SKIP
    'support:sft@v3'
    """
    from tailorlm.errors import TailorError
    from tailorlm.registry.resolve import model
    from tailorlm.train import export as ex

    proj, out = project(where), Path(out)
    mv = model(proj, version)
    adapter = proj.root / mv.adapter_path if mv.adapter_path else None
    base = mv.base_model if adapter else str(proj.root / mv.weights_path)
    if fmt == "adapter":
        if adapter is None:
            raise TailorError(f"{mv.id} is a full fine-tune with no adapter; use --format merged")
        result = ex.export_adapter(adapter, out, mv.base_model)
    elif fmt == "merged":
        result = ex.export_merged(base, adapter, out)
    elif fmt == "gguf":
        merged = out.with_suffix("") / "merged" if out.suffix else out / "merged"
        ex.export_merged(base, adapter, merged)
        result = ex.export_gguf(merged, out if out.suffix else out / f"model-{quant or 'f16'}.gguf", quant=quant)
    else:
        raise TailorError(f"unknown export format {fmt!r}; use merged, adapter or gguf")
    return {"model_version": mv.id, "format": fmt, **result}
