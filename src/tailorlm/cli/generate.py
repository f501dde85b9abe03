"""`tailor chat` and `tailor generate`."""

from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.options import JSON, PROJECT


def _params(max_tokens: int, temperature: float, top_p: float = 1.0, seed: int | None = None, stop=None):
    from tailorlm.models.base import GenParams

    return GenParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens, stop=list(stop or []), seed=seed)


@app.command(rich_help_panel="Generate")
def chat(
    question: str = typer.Argument(None, help="Ask once and exit; leave out for an interactive session."),
    system: str = typer.Option(None, help="System prompt (default: the project's, if any)."),
    max_tokens: int = typer.Option(256, min=1),
    temperature: float = typer.Option(0.0, min=0.0, help="0 is greedy and reproducible."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Chat with the project's generator (the embedded model outside a project), streaming tokens.

    Example: tailor chat "What is the capital of France?"
    """
    from tailorlm.chat import chat_messages, generator_for

    gen, default_system = generator_for(project)
    params = _params(max_tokens, temperature)
    history = chat_messages(system if system is not None else default_system)
    if question is not None:
        history.append({"role": "user", "content": question})
        if as_json:
            emit(gen.generate(history, params).to_dict(), True)
            return
        _stream(gen, history, params)
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
            history = chat_messages(system if system is not None else default_system)
            continue
        if line:
            history.append({"role": "user", "content": line})
            history.append({"role": "assistant", "content": _stream(gen, history, params)})


def _stream(gen, messages, params) -> str:
    parts = []
    for chunk in gen.stream(messages, params):
        parts.append(chunk.text)
        typer.echo(chunk.text, nl=False)
    typer.echo()
    return "".join(parts)


@app.command(rich_help_panel="Generate")
def generate(
    src: Path = typer.Argument(..., help="Input JSONL: `messages`, `prompt` or `input` per line, with an optional `id`."),
    dest: Path = typer.Argument(..., help="Output JSONL; a rerun skips ids already in it."),
    batch_size: int = typer.Option(8, min=1, help="Conversations generated together."),
    max_tokens: int = typer.Option(256, min=1),
    temperature: float = typer.Option(0.0, min=0.0),
    seed: int = typer.Option(None, help="Seed for sampling when temperature > 0."),
    stop: list[str] = typer.Option(None, help="Stop string; repeat for several."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Generate answers for every line of a JSONL file, with a progress bar. Resumable.

    Example: tailor generate questions.jsonl answers.jsonl --batch-size 8
    """
    from tailorlm.chat import generator_for
    from tailorlm.generate import generate_file
    from tailorlm.progress import counting, display

    gen, _ = generator_for(project)
    params = _params(max_tokens, temperature, seed=seed, stop=stop)
    with display(not as_json) as (on_progress, _console):
        result = generate_file(src, dest, gen, params, batch_size=batch_size,
                               on_progress=counting(on_progress, "generating"))
    if not emit(result, as_json):
        typer.echo(f"{result['generated']} generated, {result['skipped']} already done, "
                   f"{result['rejected']} rejected -> {result['output']}")
        for problem in result["problems"][:10]:
            typer.echo(f"  {problem}", err=True)
        if result["rejected"]:
            typer.echo(f"rejected lines are in {result['rejected_path']}", err=True)
    if result["rejected"]:
        raise typer.Exit(1)
