"""Chat helpers shared by `tailor chat`, `tailor generate` and the quickstart."""

from pathlib import Path

from tailorlm.config import GeneratorConfig
from tailorlm.errors import ConfigError


def system_prompt(task) -> str:
    """The prompting rung's system prompt for a task: the configured one, or one built from it."""
    if task.system_prompt:
        return task.system_prompt
    prompt = task.description.strip()
    if task.labels:
        prompt += " Answer with exactly one of: " + ", ".join(task.labels) + "."
    return prompt


def chat_messages(system: str | None) -> list[dict]:
    return [{"role": "system", "content": system}] if system else []


def generator_for(project_path: Path | None):
    """The generator (and default system prompt) of the project here, or the embedded default
    when there is no project. A project whose tailor.yaml is broken is an error, not a fallback."""
    from tailorlm.models import get_generator
    from tailorlm.project import Project, find_root

    try:
        root = find_root(project_path)
    except ConfigError:
        if project_path is not None:
            raise
        return get_generator(GeneratorConfig()), None
    project = Project.load(root)
    return get_generator(project.config.models.generator), system_prompt(project.config.task)
