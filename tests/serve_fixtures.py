"""Fixtures for the `tailor serve` tests: a project, a real uvicorn server on loopback, model versions.

Import the fixtures into a test module with `from tests.serve_fixtures import *  # noqa: F403`.
"""

import copy
import json
from pathlib import Path

import pytest

__all__ = ["project", "start", "fresh_generator", "add_version", "client_for", "write_project"]


def write_project(root: Path, generator: str = "smollm2-135m-instruct", extra: str = ""):
    """A minimal project folder; `generator` may be a model folder (what `tailor serve` then loads)."""
    from tailorlm.project import Project

    root.mkdir(parents=True, exist_ok=True)
    (root / "tailor.yaml").write_text("name: acme\ntask:\n  description: Answer questions about Acme.\n"
                                      f"models:\n  generator:\n    model: {json.dumps(str(generator))}\n{extra}")
    project = Project.load(root)
    project.store  # creates and migrates the database
    return project


@pytest.fixture
def project(tmp_path):
    return write_project(tmp_path / "acme")


@pytest.fixture
def fresh_generator(tiny_model, tokenizer):
    """A LocalGenerator over a private copy of the tiny model: peft adapters attach to the model
    in place, which must not leak into the session-wide fixture."""
    from tailorlm.models.local import LocalGenerator

    return LocalGenerator(copy.deepcopy(tiny_model), tokenizer, name="tiny")


@pytest.fixture
def start(project, tiny_generator):
    """start(**create_app kwargs) -> (base_url, app): a real server on a free loopback port, stopped after the test."""
    from tailorlm.models.pool import ModelPool
    from tailorlm.serve.app import create_app
    from tailorlm.serve.server import running

    opened = []

    def _start(project=project, pool=None, **kwargs):
        if pool is None and not kwargs.get("upstream"):
            pool = ModelPool(project, generator=tiny_generator)
        app = create_app(project, pool=pool, **kwargs)
        cm = running(app)
        url = cm.__enter__()
        opened.append(cm)
        return url, app

    yield _start
    for cm in reversed(opened):
        cm.__exit__(None, None, None)


def client_for(url: str, key: str = "none"):
    from openai import OpenAI

    return OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)


def add_version(project, base_model, tiny_model, r: int = 4, method: str = "sft") -> dict:
    """Register a model version whose LoRA adapter (random, so it changes answers) is saved in the project."""
    from peft import LoraConfig, get_peft_model

    from tailorlm.train import registry

    n = len(project.store.select("model_versions")) + 1
    folder = project.root / "adapters" / f"v{n}"
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(tiny_model), config).save_pretrained(folder)
    return registry.register(project, "acme", method, base_model, None, None, adapter_path=str(folder.relative_to(project.root)),
                             lineage={"system_prompt": "You are Acme's assistant."})
