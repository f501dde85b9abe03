"""`tailor serve --backend vllm`: vLLM generates, Tailor's gateway stays in front.

vLLM serves the base model and every LoRA model version of the project from one process
(`vllm serve BASE --enable-lora --lora-modules NAME=PATH ...`); Tailor keeps doing what vLLM does
not: rung prompting (system prompt, few-shot turns, retrieval), API keys, traces and feedback.
`vllm_command` writes that command line; `launch` runs it when vllm is installed, or the gateway
points at a vLLM server already running (`--upstream URL`). `UpstreamPool` stands in for
`ModelPool`: the same rungs, but each model version generates through the upstream under its
adapter's name.
"""

import importlib.util
import re
import subprocess
import time

from tailorlm.errors import TailorError
from tailorlm.registry.artifacts import ModelVersion
from tailorlm.registry.resolve import models


def lora_name(version_id: str) -> str:
    """The name vLLM knows a model version's adapter by: `support:sft@v3` -> `support-sft-v3`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", version_id)


def adapter_versions(project) -> list[ModelVersion]:
    """Model versions vLLM can serve as LoRA modules of the project's base (not full fine-tunes), oldest first."""
    base = project.config.models.generator.model
    return [v for v in models(project) if v.adapter_path and v.base_model == base]


def vllm_command(project, host: str = "127.0.0.1", port: int = 8001, extra: list[str] | None = None) -> list[str]:
    """The `vllm serve` command line for the project's base model and all its adapter versions.

    >>> " ".join(vllm_command(project)[6:])  # doctest: +SKIP
    '--host 127.0.0.1 --port 8001 --enable-lora --lora-modules support-sft-v1=/p/.tailor/runs/r1/model --max-lora-rank 16 ...'
    """
    from tailorlm.models.local import resolve_model_path
    from tailorlm.train.export import VLLM_DEFAULT_MAX_LORA_RANK, read_adapter_config

    cfg = project.config.models.generator
    cmd = ["vllm", "serve", resolve_model_path(cfg.model), "--served-model-name", cfg.model,
           "--host", host, "--port", str(port)]
    if cfg.trust_remote_code:
        cmd.append("--trust-remote-code")
    versions = adapter_versions(project)
    if versions:
        paths = [project.root / v.adapter_path for v in versions]
        ranks = [read_adapter_config(p)["r"] for p in paths]
        # vLLM preallocates LoRA buffers at --max-lora-rank; its allowed values are powers of two from 8.
        rank = max(VLLM_DEFAULT_MAX_LORA_RANK, *(1 << (r - 1).bit_length() for r in ranks))
        cmd += ["--enable-lora", "--lora-modules", *(f"{lora_name(v.id)}={p}" for v, p in zip(versions, paths)),
                "--max-lora-rank", str(rank), "--max-loras", str(min(len(versions), 4))]
    return cmd + list(extra or [])


def launch(cmd: list[str], base_url: str, timeout_s: float = 900) -> subprocess.Popen:
    """Start vLLM and wait until it answers GET /v1/models; needs `pip install vllm` (and a GPU)."""
    import httpx

    if importlib.util.find_spec("vllm") is None:
        raise TailorError("the vllm backend needs vLLM: `pip install vllm` on a GPU machine, or pass --upstream URL "
                          "of a running vLLM server (--dry-run prints the command to start one)")
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TailorError(f"vllm exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{base_url}/models", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(2)
    proc.terminate()
    raise TailorError(f"vllm did not answer at {base_url} within {timeout_s:.0f} s")


class UpstreamPool:
    """A `ModelPool` whose generators are an OpenAI-compatible upstream: the base under its served
    name, each model version under its LoRA module name."""

    def __init__(self, project, base_url: str, api_key_env: str | None = None):
        self.project, self.base_url, self.api_key_env = project, base_url, api_key_env
        self._generators: dict[str, object] = {}

    def _generator(self, model: str):
        from tailorlm.models.openai_compat import OpenAIGenerator

        if model not in self._generators:
            self._generators[model] = OpenAIGenerator(self.base_url, model, self.api_key_env)
        return self._generators[model]

    def default(self):
        return self._generator(self.project.config.models.generator.model)

    def for_version(self, version: dict):
        if not version.get("adapter_path"):
            raise TailorError(f"{version['id']} is a full fine-tune; vLLM serves one base with adapters, so serve "
                              f"its weights ({version.get('weights_path')}) with a vLLM server of its own")
        return self._generator(lora_name(version["id"]))
