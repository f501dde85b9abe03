"""`tailor chat` and `tailor generate`."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.options import JSON, PROJECT, sampling_option


@app.command(rich_help_panel="Generate")
def chat(
    question: str = typer.Argument(None, help="Ask once and exit; leave out for an interactive session."),
    system: str = typer.Option(None, help="System prompt (default: the project's, if any)."),
    max_tokens: int = sampling_option("max_tokens", min=1),
    temperature: float = sampling_option("temperature", min=0.0),
    top_p: float = sampling_option("top_p", min=0.0, max=1.0),
    seed: int = sampling_option("seed"),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Chat with the project's generator (the embedded model outside a project), streaming tokens.

    Example: tailor chat "What is the capital of France?"
    """
    from tailorlm.api import Chat

    session = Chat(project, system, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
    if question is not None:
        if as_json:
            emit(session.ask(question), True)
            return
        _stream(session.ask(question, stream=True))
        return
    typer.echo("Interactive chat. /reset clears the history, /exit (or Ctrl-D) leaves.")
    while True:
        try:
            line = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            typer.echo()
            return
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            session.reset()
            continue
        if line:
            _stream(session.ask(line, stream=True))


def _stream(chunks) -> None:
    for text in chunks:
        typer.echo(text, nl=False)
    typer.echo()


@app.command(rich_help_panel="Generate")
def generate(
    src: Path = typer.Argument(..., help="Input JSONL: `messages`, `prompt` or `input` per line, with an optional `id`."),
    dest: Path = typer.Argument(..., help="Output JSONL; a rerun skips ids already in it."),
    batch_size: int = typer.Option(8, min=1, help="Conversations generated together."),
    max_tokens: int = sampling_option("max_tokens", min=1),
    temperature: float = sampling_option("temperature", min=0.0),
    top_p: float = sampling_option("top_p", min=0.0, max=1.0),
    seed: int = sampling_option("seed"),
    stop: list[str] = sampling_option("stop"),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Generate answers for every line of a JSONL file, with a progress bar. Resumable.

    Example: tailor generate questions.jsonl answers.jsonl --batch-size 8
    """
    from tailorlm.api import generate as run_generate
    from tailorlm.progress import display

    with display(not as_json) as (on_progress, _console):
        result = run_generate(project, src, dest, batch_size, on_progress, max_tokens=max_tokens,
                              temperature=temperature, top_p=top_p, seed=seed, stop=list(stop or []))
    if not emit(result, as_json):
        typer.echo(f"{result['generated']} generated, {result['skipped']} already done, "
                   f"{result['rejected']} rejected -> {result['output']}")
        for problem in result["problems"][:10]:
            typer.echo(f"  {problem}", err=True)
        if result["rejected"]:
            typer.echo(f"rejected lines are in {result['rejected_path']}", err=True)
    if result["rejected"]:
        raise typer.Exit(1)
