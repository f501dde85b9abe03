"""`tailor advise` (which rung next, why, what it lacks, what it costs) and `tailor costs`."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.options import JSON, PROJECT

HTML = typer.Option(None, "--html", help="Also write the report as an HTML page here.")


@app.command(rich_help_panel="Rungs")
def advise(project: Path = PROJECT, html: Path = HTML, as_json: bool = JSON) -> None:
    """Which rung to try next, and why: reads your data, task, constraints and the latest ladder report.

    Example: tailor advise

    Example: tailor advise --json | jq .missing
    """
    from tailorlm.advise.report import advice_sections, print_sections
    from tailorlm.api import advise as run_advise

    advice = run_advise(project, html)
    if emit(advice, as_json):
        return
    print_sections(advice_sections(advice))
    typer.echo(f"HTML: {advice['html']}")


@app.command(rich_help_panel="Rungs")
def costs(
    method: str = typer.Option("lora", help="lora | qlora | full | pretrain | grpo"),
    prompts: str = typer.Option(None, help="grpo: prompts per pass (with --prompt-tokens and --completion-tokens per answer)."),
    num_generations: int = typer.Option(4, help="grpo: answers sampled per prompt."),
    params: str = typer.Option(None, help="Model size in parameters, e.g. 135M, 7B."),
    tokens: str = typer.Option(None, help="Training tokens per epoch, e.g. 2M."),
    model: str = typer.Option(None, help="A local model folder or embedded name: its size (and LoRA size) is counted."),
    trainable_params: str = typer.Option(None, help="LoRA/adapter parameters, when --model is not given."),
    lora_r: int = typer.Option(16, help="LoRA rank, for counting adapter parameters of --model."),
    epochs: float = typer.Option(1.0, help="Passes over the tokens."),
    gpu: str = typer.Option(None, help="GPU to train on (see --list-gpus); its price comes from prices.gpu_hour."),
    peak_tflops: float = typer.Option(None, help="Peak dense bf16 TFLOPs, for a GPU not in the table (from its datasheet)."),
    mfu: float = typer.Option(None, help="Model FLOPs utilisation to assume (default: advise.mfu, 0.4)."),
    queries_per_day: float = typer.Option(None, help="Expected volume, for monthly costs and the breakeven."),
    queries_per_s: float = typer.Option(None, help="Measured serving throughput (default: the latest ladder's)."),
    prompt_tokens: float = typer.Option(None, help="Prompt tokens per query (default: the latest ladder's)."),
    completion_tokens: float = typer.Option(None, help="Completion tokens per query (default: the latest ladder's)."),
    serve_gpu: str = typer.Option(None, help="Price self-hosting at this GPU's hourly price (default: prices.cpu_hour)."),
    pretrain_flops: str = typer.Option(None, help="A FLOP budget for Chinchilla-optimal sizing, e.g. 1e21."),
    list_gpus: bool = typer.Option(False, "--list-gpus", help="List the GPU table (peak bf16 FLOPs and datasheets)."),
    project: Path = PROJECT,
    html: Path = HTML,
    as_json: bool = JSON,
) -> None:
    """Training compute, GPU-hours and money; inference per 1k queries; breakeven; Chinchilla sizing.

    Example: tailor costs --method lora --params 135M --tokens 2M --gpu A100 --mfu 0.4 --queries-per-day 5000

    Example: tailor costs --pretrain-flops 1e21 --gpu H100
    """
    from tailorlm.advise.report import cost_sections, print_sections
    from tailorlm import api

    if list_gpus:
        rows = api.gpus()
        if not emit({"gpus": rows}, as_json):
            print_sections([("GPUs (dense bf16 peak)", ["name", "TFLOPs", "GB", "source"],
                             [[r["name"], r["peak_bf16_tflops"], r["memory_gb"], r["source"]] for r in rows])])
        return
    report = api.costs(project, method=method, params=params, tokens=tokens, model=model,
                       trainable_params=trainable_params, lora_r=lora_r, epochs=epochs, gpu=gpu, peak_tflops=peak_tflops,
                       mfu=mfu, queries_per_day=queries_per_day, queries_per_s=queries_per_s,
                       prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, serve_gpu=serve_gpu,
                       pretrain_flops=pretrain_flops, prompts=prompts, num_generations=num_generations, html=html)
    if emit(report, as_json):
        return
    print_sections(cost_sections(report))
    if report["html"]:
        typer.echo(f"HTML: {report['html']}")
