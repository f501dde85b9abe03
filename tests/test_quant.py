"""Quantised serving: int8 weight-only linear layers on the local backend (models/quant.py)."""

import pytest

pytest.importorskip("torchao", reason="quant: int8 needs the quant extra (pip install 'tailorlm[quant]')")


def test_int8_stores_linear_weights_as_int8_and_keeps_the_logits(tiny_model_dir):
    import torch

    from tailorlm.models.base import GenParams
    from tailorlm.models.local import LocalGenerator
    from tailorlm.models.quant import weight_bytes

    fp32 = LocalGenerator.load(str(tiny_model_dir))
    int8 = LocalGenerator.load(str(tiny_model_dir), quant="int8")
    layer = int8.model.model.layers[0]
    for lin in (layer.self_attn.q_proj, layer.mlp.down_proj, int8.model.lm_head):
        assert type(lin.weight).__name__ == "Int8Tensor"
    assert int8.model.model.embed_tokens.weight.dtype == torch.float32  # the lookup table stays float
    # The decoder layers' weights take about a quarter of their float32 bytes.
    assert weight_bytes(layer) < 0.3 * weight_bytes(fp32.model.model.layers[0])
    ids = torch.tensor([fp32.encode([{"role": "user", "content": "Where is my invoice?"}])])
    with torch.inference_mode():
        a, b = fp32.model(ids).logits[0, -1], int8.model(ids).logits[0, -1]
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99 and not torch.equal(a, b)
    out = int8.generate([{"role": "user", "content": "hi"}], GenParams(max_tokens=4))
    assert out.usage.completion_tokens >= 1


def test_serve_int8_answers_a_lora_version_over_loopback(tmp_path, tiny_model, tiny_model_dir):
    from tailorlm.serve.app import create_app
    from tailorlm.serve.server import running
    from tests.serve_fixtures import add_version, client_for, write_project

    project = write_project(tmp_path / "acme", generator=str(tiny_model_dir), extra="    quant: int8\n")
    version = add_version(project, str(tiny_model_dir), tiny_model)
    app = create_app(project)
    with running(app) as url:
        client = client_for(url)
        base = client.chat.completions.create(model=str(tiny_model_dir), messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=3)
        tuned = client.chat.completions.create(model=version["id"], messages=[{"role": "user", "content": "hi"}],
                                               max_tokens=3)
    assert base.usage.completion_tokens >= 1 and tuned.usage.completion_tokens >= 1
    # The server loaded the base itself, int8, and the version's LoRA adapter sits on those int8 weights.
    (loaded,) = app.state.gateway.router.pool._bases.values()
    q_proj = next(m for n, m in loaded.generator.model.named_modules() if n.endswith("layers.0.self_attn.q_proj"))
    assert type(q_proj.base_layer.weight).__name__ == "Int8Tensor" and hasattr(q_proj, "lora_A")


def test_serve_quant_rejects_an_unknown_kind(tmp_path, cli):
    from tests.serve_fixtures import write_project

    project = write_project(tmp_path / "acme")
    result = cli("serve", "--quant", "int3", "--project", project.root)
    assert result.exit_code == 2 and "--quant must be one of none, int8" in result.output
