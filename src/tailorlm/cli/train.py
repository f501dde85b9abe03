"""`tailor train ...`, `tailor runs ...`, `tailor export` and `tailor models versions`."""

import json
from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.models import models_app
from tailorlm.cli.project import JSON, PROJECT

train_app = typer.Typer(help="Fine-tune: LoRA/QLoRA/full SFT, DPO, KTO, GRPO, continued pre-training, small pre-training.",
                        no_args_is_help=True)
runs_app = typer.Typer(help="Training runs: status, metrics and loss curves.", no_args_is_help=True)
app.add_typer(train_app, name="train", rich_help_panel="Rungs")
app.add_typer(runs_app, name="runs", rich_help_panel="Rungs")


def _run(flags: dict, config: Path | None, resume: bool, run: str | None, dry_run: bool, project: Path | None,
         as_json: bool) -> None:
    """Build the run's config (defaults < --config file < flags that were given) and train, or launch."""
    import yaml
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from tailorlm.errors import TailorError
    from tailorlm.project import Project
    from tailorlm.train.config import TrainConfig
    from tailorlm.train.runs import train

    proj = Project.load(project)
    cfg = None
    if not resume:
        values = yaml.safe_load(Path(config).read_text()) if config else {}
        values.update({k: v for k, v in flags.items() if v is not None})
        if not values.get("dataset"):
            raise TailorError("which dataset? pass --dataset NAME (see `tailor data list`)")
        try:
            cfg = TrainConfig.model_validate(values)
        except Exception as e:  # pydantic: say which field
            raise TailorError(f"invalid training config: {e}") from e
    from tailorlm.train.scaleout import launch_run, pending_launched_run

    if (cfg is not None and cfg.launcher == "accelerate") or (resume and pending_launched_run(proj, run)):
        result = launch_run(proj, cfg, dry_run=dry_run, resume=(run or True) if resume else None)
        if not emit(result, as_json):
            typer.echo(f"accelerate config: {result['config_path']}")
            typer.echo(("would run: " if dry_run else "ran: ") + " ".join(result["command"]))
        return
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    with Progress(*columns, disable=as_json) as progress:
        task = progress.add_task("training", total=None, info="")

        def on_progress(step, total, logs, tps):
            loss = logs.get("loss", logs.get("eval_loss"))
            info = f"loss {loss:.4f}  {tps:.0f} tok/s" if isinstance(loss, (int, float)) else f"{tps:.0f} tok/s"
            if "reward_mean" in logs:  # grpo: the loss says little; the reward and the drift from the start do
                info = (f"reward {logs['reward_mean']:.3f} ±{logs['reward_std']:.3f}  kl {logs['kl']:.4f}  "
                        f"{tps:.0f} sampled tok/s")
            progress.update(task, completed=step, total=total, info=info)

        result = train(proj, cfg, resume=(run or True) if resume else None, on_progress=on_progress,
                       on_message=(lambda _m: None) if as_json else (lambda m: typer.echo(m, err=True)))
    if emit(result, as_json):
        return
    m = result["metrics"]
    typer.echo(f"{result['model_version']} registered (run {result['run_id']}, dataset {result['dataset_version']})")
    if "reward_first_quarter" in m:
        typer.echo(f"steps {m['steps']}, reward {m['reward_first_quarter']:.3f} -> {m['reward_last_quarter']:.3f} "
                   f"(first and last quarter), KL {m['kl_last']:.4f}, {m['tokens_per_s']} sampled tokens/s")
        return
    typer.echo(f"steps {m['steps']}, train loss {m['train_loss_first']:.4f} -> {m['train_loss_last']:.4f}"
               + (f", best eval loss {m['eval_loss_best']:.4f}" if m.get("eval_loss_best") is not None else "")
               + f", {m['tokens_per_s']} tokens/s")


def _command(method: str, doc: str):
    def command(
        dataset: str = typer.Option(None, help="Dataset version: NAME, NAME@latest or NAME@HASH."),
        config: Path = typer.Option(None, help="A run's config.yaml to start from; flags override it."),
        resume: bool = typer.Option(False, help="Continue the latest unfinished run (or --run) from its last checkpoint."),
        run: str = typer.Option(None, help="With --resume: the run id."),
        base: str = typer.Option(None, help="Base model or a model version id to start from (default: the generator)."),
        adapter: str = typer.Option(None, help="lora | qlora | full"),
        lora_r: int = typer.Option(None, help="LoRA rank."),
        learning_rate: float = typer.Option(None),
        epochs: float = typer.Option(None),
        max_steps: int = typer.Option(None),
        batch_size: int = typer.Option(None),
        max_seq_len: int = typer.Option(None),
        eval_steps: int = typer.Option(None, help="Validation loss and a checkpoint every this many steps."),
        gradient_checkpointing: bool = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing"),
        launcher: str = typer.Option(None, help="none | accelerate"),
        gpus: int = typer.Option(None, help="accelerate: GPUs per node."),
        processes: int = typer.Option(None, help="accelerate without GPUs: data-parallel CPU processes (gloo)."),
        nodes: int = typer.Option(None, help="accelerate: machines."),
        strategy: str = typer.Option(None, help="accelerate: ddp | fsdp | deepspeed"),
        dry_run: bool = typer.Option(False, help="accelerate: write the config and print the command only."),
        project: Path = PROJECT,
        as_json: bool = JSON,
    ) -> None:
        flags = dict(method=method, dataset=dataset, base=base, adapter=adapter, lora_r=lora_r,
                     learning_rate=learning_rate, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                     max_seq_len=max_seq_len, eval_steps=eval_steps, gradient_checkpointing=gradient_checkpointing,
                     launcher=launcher, gpus=gpus, nodes=nodes, strategy=strategy, processes=processes)
        _run(flags, config, resume, run, dry_run, project, as_json)

    command.__doc__ = doc
    return command


train_app.command("sft")(_command("sft", """Supervised fine-tuning on a chat dataset (LoRA by default); loss on assistant tokens only.

    Example: tailor train sft --dataset tickets --epochs 1
    """))
train_app.command("dpo")(_command("dpo", """Preference tuning (DPO) on prompt/chosen/rejected pairs, from the base or an SFT version.

    Example: tailor train dpo --dataset prefs --base keelbox-support:sft@v1
    """))
train_app.command("cpt")(_command("cpt", """Continued pre-training on documents: causal LM over packed text.

    Example: tailor train cpt --dataset docs --max-steps 200
    """))

train_app.command("kto")(_command("kto", """Unpaired preference tuning (KTO) on answers marked up or down (thumbs), from the base or an SFT version.

    The dataset is chat records ending with the answer, each with `label: up|down`. tailor loop writes one
    (feedback-kto) from thumbs that have no pair.

    Example: tailor train kto --dataset feedback-kto --base keelbox-support:sft@v1
    """))


@train_app.command("grpo")
def grpo(
    dataset: str = typer.Option(None, help="A chat dataset: its prompts are answered, its answers are the references."),
    config: Path = typer.Option(None, help="A run's config.yaml to start from; flags override it."),
    resume: bool = typer.Option(False, help="Continue the latest unfinished run (or --run) from its last checkpoint."),
    run: str = typer.Option(None, help="With --resume: the run id."),
    base: str = typer.Option(None, help="Base model or a model version id (e.g. an sft version) to start from."),
    reward: list[str] = typer.Option(None, help="A reward, repeatable: label | label_valid | schema | reference | "
                                     "length | format | judge | module:function, each with an optional *WEIGHT "
                                     "(e.g. label --reward 'myrewards:brevity*0.2'). Default: from the task."),
    num_generations: int = typer.Option(None, help="Answers sampled per prompt (default 4)."),
    max_completion_tokens: int = typer.Option(None, help="Longest sampled answer (default 64)."),
    temperature: float = typer.Option(None, help="Sampling temperature (default 1.0)."),
    beta: float = typer.Option(None, help="KL penalty to the starting model (default 0.1; 0: none)."),
    lora_r: int = typer.Option(None, help="LoRA rank."),
    learning_rate: float = typer.Option(None),
    epochs: float = typer.Option(None, help="Passes over the prompts (default 1)."),
    max_steps: int = typer.Option(None),
    batch_size: int = typer.Option(None, help="Answers per step (prompts x num_generations)."),
    max_seq_len: int = typer.Option(None),
    eval_steps: int = typer.Option(None, help="A checkpoint every this many steps."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Reinforcement fine-tuning (GRPO) with rewards checked against the task: sample answers, score them, prefer the better.

    Example: tailor train grpo --dataset tickets --base keelbox-support:sft@v1 --max-steps 30
    """
    from tailorlm.train.rewards import parse_reward

    flags = dict(method="grpo", dataset=dataset, base=base, lora_r=lora_r, learning_rate=learning_rate, epochs=epochs,
                 max_steps=max_steps, batch_size=batch_size, max_seq_len=max_seq_len, eval_steps=eval_steps,
                 num_generations=num_generations, max_completion_tokens=max_completion_tokens, temperature=temperature,
                 beta=beta, rewards=[parse_reward(r) for r in reward] if reward else None)
    _run(flags, config, resume, run, False, project, as_json)


@train_app.command("pretrain")
def pretrain(
    dataset: str = typer.Option(None, help="A documents (text) dataset version."),
    compute_flops: float = typer.Option(None, help="Training budget in FLOPs; the model is sized Chinchilla-optimally."),
    params: int = typer.Option(None, help="Model size in parameters, instead of a budget."),
    vocab_size: int = typer.Option(None, help="BPE vocabulary trained on the corpus (default 8000)."),
    max_steps: int = typer.Option(None),
    batch_size: int = typer.Option(None),
    max_seq_len: int = typer.Option(None),
    learning_rate: float = typer.Option(None),
    resume: bool = typer.Option(False, help="Continue the latest unfinished run."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """A small model from scratch: a BPE tokenizer on the corpus, a Chinchilla-sized Llama config, training.

    Example: tailor train pretrain --dataset docs --compute-flops 1e15 --max-steps 200
    """
    flags = dict(method="pretrain", adapter="full", dataset=dataset, compute_flops=compute_flops, params=params,
                 vocab_size=vocab_size, max_steps=max_steps, batch_size=batch_size, max_seq_len=max_seq_len,
                 learning_rate=learning_rate)
    _run(flags, None, resume, None, False, project, as_json)


@runs_app.command("list")
def runs_list(project: Path = PROJECT, as_json: bool = JSON) -> None:
    """List training runs with their status and model versions.

    Example: tailor runs list
    """
    from tailorlm.project import Project

    proj = Project.load(project)
    rows = proj.store.select("runs", order_by="created_at")
    out = [{"id": r["id"], "method": r["method"], "status": r["status"], "dataset": r["dataset_version"],
            "created_at": r["created_at"], "error": r["error"]} for r in rows]
    if emit({"runs": out}, as_json):
        return
    for r in out:
        typer.echo(f"{r['id']}  {r['method']:4}  {r['status']:8}  {r['dataset'] or '-':20}  {r['created_at'][:19]}"
                   + (f"  error: {r['error'][:80]}" if r["error"] else ""))


@runs_app.command("show")
def runs_show(run: str = typer.Argument(..., help="Run id."), project: Path = PROJECT, as_json: bool = JSON) -> None:
    """A run's config, metrics and loss curves (terminal plot, and a PNG beside the run).

    Example: tailor runs show sft-20261121-101500-ab12
    """
    from tailorlm.errors import TailorError
    from tailorlm.project import Project
    from tailorlm.train.plot import ascii_plot, png_plot

    proj = Project.load(project)
    rows = proj.store.select("runs", id=run)
    if not rows:
        raise TailorError(f"no run {run!r}; `tailor runs list` shows them")
    metrics = proj.store.select("run_metrics", order_by="step", run_id=run)
    curves = {name: [(m["step"], m["value"]) for m in metrics if m["name"] == name] for name in ("loss", "eval_loss")}
    curves = {k: v for k, v in curves.items() if v}
    png = png_plot(curves, proj.root / rows[0]["output_dir"] / "loss.png")
    result_path = proj.root / rows[0]["output_dir"] / "result.json"
    info = {"id": run, "status": rows[0]["status"], "config": json.loads(rows[0]["config"]), "curves": curves,
            "png": str(png), "result": json.loads(result_path.read_text()) if result_path.exists() else None}
    if emit(info, as_json):
        return
    typer.echo(f"{run}: {rows[0]['status']}, method {rows[0]['method']}, dataset {rows[0]['dataset_version']}")
    typer.echo(ascii_plot(curves))
    typer.echo(f"PNG: {png}")


@models_app.command("versions")
def versions(project: Path = PROJECT, as_json: bool = JSON) -> None:
    """Model versions registered by training runs, with lineage, metrics and aliases.

    Example: tailor models versions
    """
    from tailorlm.project import Project
    from tailorlm.train.registry import versions as list_versions

    rows = list_versions(Project.load(project))
    if emit({"versions": rows}, as_json):
        return
    for r in rows:
        loss = r["metrics"].get("eval_loss_best") or r["metrics"].get("train_loss_last")
        typer.echo(f"{r['id']:32} base {r['base_model']:24} data {r['dataset_version'] or '-':20} "
                   f"loss {loss if loss is None else round(loss, 4)}  {' '.join(r['aliases'])}")


@app.command("export", rich_help_panel="Rungs")
def export(
    version: str = typer.Argument(..., help="Model version id (e.g. support:sft@v3) or NAME@ALIAS."),
    out: Path = typer.Argument(..., help="Output folder (or file for gguf)."),
    fmt: str = typer.Option("merged", "--format", help="merged (HF safetensors) | adapter (PEFT, for vLLM) | gguf"),
    quant: str = typer.Option(None, "--quant", help="gguf: q8_0 (by the converter) | q4_k_m (needs llama.cpp's "
                              "llama-quantize); default f16."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Export a model version: merged weights, a PEFT adapter folder for vLLM, or GGUF.

    Example: tailor export keelbox-support:sft@v1 exported/ --format adapter
    Example: tailor export keelbox-support:sft@v1 support-q4.gguf --format gguf --quant q4_k_m
    """
    from tailorlm.errors import TailorError
    from tailorlm.project import Project
    from tailorlm.train import export as ex
    from tailorlm.train.registry import resolve

    proj = Project.load(project)
    mv = resolve(proj, version)
    adapter = proj.root / mv["adapter_path"] if mv["adapter_path"] else None
    if fmt == "adapter":
        if adapter is None:
            raise TailorError(f"{mv['id']} is a full fine-tune with no adapter; use --format merged")
        result = ex.export_adapter(adapter, out, mv["base_model"])
    elif fmt == "merged":
        result = ex.export_merged(mv["base_model"] if adapter else str(proj.root / mv["weights_path"]), adapter, out)
    elif fmt == "gguf":
        merged = out.with_suffix("") / "merged" if out.suffix else out / "merged"
        ex.export_merged(mv["base_model"] if adapter else str(proj.root / mv["weights_path"]), adapter, merged)
        result = ex.export_gguf(merged, out if out.suffix else out / f"model-{quant or 'f16'}.gguf", quant=quant)
    else:
        raise TailorError(f"unknown export format {fmt!r}; use merged, adapter or gguf")
    if not emit({"model_version": mv["id"], "format": fmt, **result}, as_json):
        typer.echo(f"exported {mv['id']} ({fmt}) to {out}")
