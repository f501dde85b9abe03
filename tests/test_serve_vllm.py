"""`--backend vllm`: the command line Tailor writes, and the gateway in front of an OpenAI-compatible
upstream (the scripted `FakeUpstream` standing in for vLLM)."""

import importlib.util
import json

import pytest

from tests.serve_fixtures import *  # noqa: F403
from tests.serve_fixtures import add_version, client_for, write_project


def test_the_vllm_command_serves_the_base_and_every_adapter_version(tmp_path, tiny_model, tiny_model_dir, cli):
    from tailorlm.serve.vllm import vllm_command
    from tailorlm.train import registry

    project = write_project(tmp_path / "acme", generator=tiny_model_dir)
    add_version(project, str(tiny_model_dir), tiny_model, r=8)
    add_version(project, str(tiny_model_dir), tiny_model, r=24)
    registry.register(project, "acme", "full", str(tiny_model_dir), None, None, weights_path="full/model")
    add_version(project, "some-other-base", tiny_model)  # another base: not a module of this vLLM

    cmd = vllm_command(project, "127.0.0.1", 8011)
    assert cmd[:3] == ["vllm", "serve", str(tiny_model_dir)]
    flags = {cmd[i]: cmd[i + 1] for i in range(3, len(cmd) - 1) if cmd[i].startswith("--")}
    assert flags["--served-model-name"] == str(tiny_model_dir) and flags["--port"] == "8011"
    assert "--enable-lora" in cmd and flags["--max-lora-rank"] == "32" and flags["--max-loras"] == "2"
    modules = cmd[cmd.index("--lora-modules") + 1: cmd.index("--max-lora-rank")]
    assert modules == [f"acme-sft-v1={project.root / 'adapters/v1'}", f"acme-sft-v2={project.root / 'adapters/v2'}"]

    out = cli("serve", "--backend", "vllm", "--dry-run", "--vllm-port", "8011", "-p", project.root, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["command"] == cmd


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_launching_vllm_without_it_says_what_to_do(tmp_path, tiny_model_dir):
    from tailorlm.errors import TailorError
    from tailorlm.serve.vllm import launch, vllm_command

    project = write_project(tmp_path / "acme", generator=tiny_model_dir)
    with pytest.raises(TailorError, match="pip install vllm"):
        launch(vllm_command(project), "http://127.0.0.1:8011/v1")


def test_the_gateway_forwards_rungs_and_versions_to_the_upstream(start, project, upstream, tiny_model):
    version = add_version(project, "smollm2-135m-instruct", tiny_model)
    url, _ = start(upstream=upstream.base_url)
    client = client_for(url)
    upstream.answers += ["Team costs $12 a seat.", "The adapter speaks.", "Streamed from upstream."]

    r = client.chat.completions.create(model="acme:zero_shot", messages=[{"role": "user", "content": "Team price?"}])
    assert r.choices[0].message.content == "Team costs $12 a seat." and r.usage.prompt_tokens == 7
    sent = upstream.requests[-1]
    assert sent["model"] == "smollm2-135m-instruct"  # the base, under its served name
    assert sent["messages"][0]["role"] == "system" and "Acme" in sent["messages"][0]["content"]  # rung prompting stays here

    r2 = client.chat.completions.create(model=version["id"], messages=[{"role": "user", "content": "hi"}], temperature=0)
    assert upstream.requests[-1]["model"] == "acme-sft-v1" and r2.choices[0].message.content == "The adapter speaks."
    assert upstream.requests[-1]["messages"][0]["content"] == "You are Acme's assistant."  # as the version was trained

    events = list(client.chat.completions.create(model="acme:zero_shot", messages=[{"role": "user", "content": "x"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(e.choices[0].delta.content or "" for e in events if e.choices) == "Streamed from upstream."
    assert events[-1].usage.completion_tokens == 3

    rows = {t["id"]: t for t in project.store.select("traces")}
    assert rows[r2.id]["model_version"] == "acme:sft@v1" and rows[events[0].id]["status"] == 200
    assert client.models.list().data  # the gateway, not the upstream, answers for the served names


def test_an_upstream_that_fails_is_a_502_not_a_crash(start, project):
    from tests.conftest import free_port

    url, _ = start(upstream=f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    import openai

    with pytest.raises(openai.APIStatusError) as e:
        client_for(url).chat.completions.create(model="acme:zero_shot", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502 and e.value.body["code"] == "upstream_failed"


def test_the_upstream_key_comes_from_the_environment(start, project, upstream, monkeypatch):
    monkeypatch.setenv("VLLM_KEY", "upstream-secret-1")
    url, _ = start(upstream=upstream.base_url, upstream_key_env="VLLM_KEY")
    upstream.answers.append("ok")
    client_for(url).chat.completions.create(model="acme:zero_shot", messages=[{"role": "user", "content": "hi"}])
    assert upstream.headers[-1]["authorization"] == "Bearer upstream-secret-1"
