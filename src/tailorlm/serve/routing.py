"""Which rung answers a served model name; each is built once and kept.

Served names (GET /v1/models):
- every configured rung, `PROJECT:RUNG`; every model version, `PROJECT:sft@v3`; every alias,
  `PROJECT@production` (from `rungs.build.served_names`; the retired `PROJECT:production` still answers);
- the configured generator model's own name (`smollm2-135m-instruct`): the plain generator with
  no system prompt;
- the bare project name: the version the `production` alias points at, once one is promoted.

Aliases are resolved on every request, so promoting or rolling back a version takes effect
without a restart; the rung behind each version is built once. With `serve.ab.share` above 0,
`route` sends that share of the production model's users to the `candidate` alias (`serve/ab.py`).
"""

import threading

from tailorlm.errors import TailorError


class UnknownModel(TailorError):
    """No served model has that name (HTTP 404)."""


class ModelNotReady(TailorError):
    """The name is served but its rung cannot be built yet, e.g. it needs an index (HTTP 503)."""


class Router:
    """Model names to rungs for one project, over one `ModelPool` (or an upstream pool).

    >>> Router(project, ModelPool(project)).rung("support:rag").answer(messages)  # doctest: +SKIP
    """

    def __init__(self, project, pool, embedder=None):
        self.project, self.pool = project, pool
        self._embedder = embedder
        self._rungs: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def generator_name(self) -> str:
        return self.project.config.models.generator.model

    @property
    def embedder_name(self) -> str:
        return self.project.config.models.embedder.model

    def names(self) -> list[str]:
        from tailorlm.rungs.build import served_names

        names = [self.generator_name, *served_names(self.project)]
        if self._production():
            names.append(self.project.config.name)
        return list(dict.fromkeys(names))

    def resolve(self, name: str) -> str:
        """The name with aliases replaced by the version they point at."""
        cfg = self.project.config
        if name == cfg.name:
            target = self._production()
            if not target:
                raise UnknownModel(f"{name!r} stands for the production model version, and none is promoted yet; "
                                   f"GET /v1/models lists the served names")
            return target
        from tailorlm.registry.names import model_alias
        from tailorlm.registry.resolve import alias_target

        # NAME@ALIAS, or the retired NAME:ALIAS; never a version id (NAME:METHOD@vN has a qualifier and a tag)
        found = model_alias(self.project, name)
        if found:
            return alias_target(self.project, "model", *found) or name
        return name

    def route(self, name: str, unit: str) -> tuple[object, str | None]:
        """(rung, arm): while an A/B canary runs (`serve.ab`), a request for the production model goes to
        the candidate or production version by `unit`'s arm (see `serve.ab`); arm is None outside one."""
        from tailorlm.serve.ab import CANDIDATE, assign, experiment

        cfg = self.project.config
        production = (cfg.name, f"{cfg.name}@production", f"{cfg.name}:production")
        running = experiment(self.project) if name in production else None
        if running is None:
            return self.rung(name), None
        production, candidate = running
        arm = assign(unit, cfg.serve.ab.share, salt=candidate)
        return self.rung(candidate if arm == CANDIDATE else production), arm

    def rung(self, name: str):
        """The rung answering as `name`, built on first use (which may load a model)."""
        from tailorlm.rungs.base import PromptRung
        from tailorlm.rungs.build import rung_for_model, served_names

        key = self.resolve(name)
        if key in self._rungs:
            return self._rungs[key]
        with self._lock:  # one build at a time: two first requests must not load a model twice
            if key in self._rungs:
                return self._rungs[key]
            if key == self.generator_name:
                rung = PromptRung(self.pool.default(), None, key)
            elif key not in served_names(self.project):
                raise UnknownModel(f"unknown model {name!r}; GET /v1/models lists the served names")
            else:
                try:
                    rung = rung_for_model(self.project, key, self.pool, self._embedder)
                except TailorError as e:
                    raise ModelNotReady(f"model {name!r} cannot answer yet: {e}") from e
            self._rungs[key] = rung
            return rung

    def embedder(self):
        if self._embedder is None:
            from tailorlm.models import get_embedder

            with self._lock:
                self._embedder = self._embedder or get_embedder(self.project.config.models.embedder)
        return self._embedder

    def _production(self) -> str | None:
        from tailorlm.registry.resolve import alias_target

        return alias_target(self.project, "model", self.project.config.name, "production")
