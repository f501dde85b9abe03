"""`tailor init`, `tailor config ...` and `tailor quickstart`."""

import json
from pathlib import Path

import typer

from tailorlm.cli import app, emit
from tailorlm.cli.options import JSON, PROJECT, SHORT

config_app = typer.Typer(help="Show the resolved config or its JSON Schema.", no_args_is_help=True)
app.add_typer(config_app, name="config", rich_help_panel="Project")


@app.command(rich_help_panel="Project")
def init(
    path: Path = typer.Argument(Path("."), help="Folder to create the project in."),
    name: str = typer.Option(None, help="Project name (default: the folder's name)."),
    description: str = typer.Option(None, help="What the model should do, in a sentence."),
    force: bool = typer.Option(False, help="Overwrite an existing tailor.yaml."),
    as_json: bool = JSON,
) -> None:
    """Create a project: a commented tailor.yaml and the .tailor/ state folder.

    Example: tailor init support --description "Answer customer questions about Acme Cloud"
    """
    from tailorlm.api import init as init_project

    info = init_project(path, name, description, force)
    if not emit(info, as_json):
        typer.echo(f"Created {info['config']} and {info['state_dir']}/")
        typer.echo("Next: add sources to tailor.yaml, or try `tailor chat \"hello\"` in that folder.")


@config_app.command("show")
def config_show(project: Path = PROJECT, as_json: bool = JSON) -> None:
    """Print the resolved config, every default filled in.

    Example: tailor config show --json
    """
    import yaml

    from tailorlm.api import config

    cfg = config(project)
    if not emit(cfg, as_json):
        typer.echo(yaml.safe_dump(cfg, sort_keys=False), nl=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of tailor.yaml, with a description for every key.

    Example: tailor config schema > tailor.schema.json
    """
    from tailorlm.api import config_schema

    typer.echo(json.dumps(config_schema(), indent=2))


@app.command(rich_help_panel="Project")
def quickstart(
    path: Path = typer.Argument(Path("tailor-quickstart"), help="Where to create the example project."),
    rungs: str = typer.Option(None, help="Only these rungs (comma-separated names), e.g. zero_shot,rag."),
    short: bool = SHORT,
    as_json: bool = JSON,
) -> None:
    """The main job: the whole ladder on the shipped example project, offline, with the embedded models.

    data prepare -> rag index -> advise -> ladder (zero-shot, few-shot, rag, LoRA sft, hybrid) -> report.
    The first run fetches the embedded models (about 150 MB) once. Rerun it to resume.

    Example: tailor quickstart
    """
    from tailorlm.api import quickstart as run_quickstart
    from tailorlm.cli.eval import print_ladder
    from tailorlm.progress import display

    with display(not as_json) as (on_progress, console):
        result = run_quickstart(path, rungs=rungs.split(",") if rungs else None, on_progress=on_progress,
                                log=(lambda _msg: None) if as_json else console.print)
    if not emit(result, as_json):
        print_ladder(result, short=short)
