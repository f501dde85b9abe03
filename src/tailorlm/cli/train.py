"""`tailor train ...`, `tailor runs ...`, `tailor export` and `tailor models versions`."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.models import models_app
from tailorlm.cli.options import JSON, PROJECT, lazy_group

runs_app = typer.Typer(help="Training runs: status, metrics and loss curves.", no_args_is_help=True)
app.add_typer(runs_app, name="runs", rich_help_panel="Rungs")

TRAIN_HELP = "Fine-tune: LoRA/QLoRA/full SFT, DPO, KTO, GRPO, continued pre-training, small pre-training."
# Not flags: set by the command (method), hand-parsed (rewards: --reward), or lists (target_modules, report_to:
# give them in --config).
NOT_FLAGS = {"method", "rewards", "target_modules", "report_to"}


# Built on first use: the commands' flags come from TrainConfig's fields, and importing pydantic for every
# `tailor --help` would cost more than the whole CLI does.
lazy_group(app, lambda: _train_app(), "train", help=TRAIN_HELP, no_args_is_help=True, rich_help_panel="Rungs")


def _run(method: str, fields: dict, config: Path | None, resume: bool, run: str | None, dry_run: bool,
         project: Path | None, as_json: bool) -> None:
    """One call into the library (`tailorlm.api.train`), shown with the one progress display."""
    from tailorlm.api import train
    from tailorlm.progress import display

    with display(not as_json) as (on_progress, _console):
        result = train(project, config, resume=(run or True) if resume else None, dry_run=dry_run,
                       on_progress=on_progress, on_message=(lambda _m: None) if as_json else (lambda m: typer.echo(m, err=True)),
                       **({"method": method, **fields} if not resume else {}))
    if emit(result, as_json):
        return
    if "command" in result:  # launched with accelerate
        typer.echo(f"accelerate config: {result['config_path']}")
        typer.echo(("would run: " if dry_run else "ran: ") + " ".join(result["command"]))
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


def _command(method: str, doc: str, help_overrides: dict | None = None, fixed: dict | None = None):
    """A `tailor train METHOD` command whose flags are TrainConfig's fields, help from their descriptions."""
    from tailorlm.cli.options import CONFIG_FILE, RESUME_RUN, RUN, config_options, flag_fields, with_parameters
    from tailorlm.train.config import TrainConfig

    def command(
        config: Path = CONFIG_FILE,
        resume: bool = RESUME_RUN,
        run: str = RUN,
        dry_run: bool = typer.Option(False, help="accelerate: write the config and print the command only."),
        reward: list[str] = typer.Option(None, help="grpo: a reward, repeatable: label | label_valid | schema | "
                                         "reference | length | format | judge | module:function, each with an optional "
                                         "*WEIGHT (e.g. label --reward 'myrewards:brevity*0.2'). Default: from the task."),
        project: Path = PROJECT,
        as_json: bool = JSON,
        **fields,
    ) -> None:
        if reward:
            from tailorlm.train.rewards import parse_reward

            fields["rewards"] = [parse_reward(r) for r in reward]
        _run(method, {**fields, **(fixed or {})}, config, resume, run, dry_run, project, as_json)

    names = [n for n in flag_fields(TrainConfig) if n not in NOT_FLAGS and n not in (fixed or {})]
    with_parameters(command, config_options(TrainConfig, names, help_overrides))
    command.__doc__ = doc
    return command


GRPO_HELP = {"dataset": "A chat dataset: its prompts are answered, its answers are the references.",
             "base": "Base model or a model version id (e.g. an sft version) to start from.",
             "batch_size": "Answers per step (prompts x num_generations).",
             "eval_steps": "A checkpoint every this many steps."}


def _train_app() -> typer.Typer:
    train_app = typer.Typer(help=TRAIN_HELP, no_args_is_help=True)
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
    train_app.command("grpo")(_command("grpo", """Reinforcement fine-tuning (GRPO) with rewards checked against the task: sample answers, score them, prefer the better.

    Example: tailor train grpo --dataset tickets --base keelbox-support:sft@v1 --max-steps 30
    """, GRPO_HELP))
    train_app.command("pretrain")(_command("pretrain", """A small model from scratch: a BPE tokenizer on the corpus, a Chinchilla-sized Llama config, training.

    Example: tailor train pretrain --dataset docs --compute-flops 1e15 --max-steps 200
    """, {"dataset": "A documents (text) dataset version."}, fixed={"adapter": "full"}))
    return train_app


@runs_app.command("list")
def runs_list(project: Path = PROJECT, as_json: bool = JSON) -> None:
    """List training runs with their status and model versions.

    Example: tailor runs list
    """
    from tailorlm.api import runs

    out = runs(project)
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
    from tailorlm.api import run as show_run
    from tailorlm.train.plot import ascii_plot

    info = show_run(project, run)
    if emit(info, as_json):
        return
    typer.echo(f"{run}: {info['status']}, method {info['method']}, dataset {info['dataset_version']}")
    typer.echo(ascii_plot(info["curves"]))
    typer.echo(f"PNG: {info['png']}")


@models_app.command("versions")
def versions(project: Path = PROJECT, as_json: bool = JSON) -> None:
    """Model versions registered by training runs, with lineage, metrics and aliases.

    Example: tailor models versions
    """
    from tailorlm.api import model_versions

    rows = model_versions(project)
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
    from tailorlm.api import export as run_export

    result = run_export(project, version, out, fmt, quant)
    if not emit(result, as_json):
        typer.echo(f"exported {result['model_version']} ({fmt}) to {out}")
