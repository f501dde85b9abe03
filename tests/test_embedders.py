"""The embedded MiniLM embedder, loaded offline from its cached wheel contents."""

import pytest


@pytest.fixture(scope="module")
def embedder():
    from tailorlm.config import EmbedderConfig
    from tailorlm.models import get_embedder

    return get_embedder(EmbedderConfig())


def test_similar_texts_are_closer_than_unrelated_ones(embedder):
    a, b, c = embedder.embed([
        "How do I reset my password?",
        "I forgot my password and need to change it.",
        "The invoice for March was charged twice.",
    ])
    dot = lambda x, y: sum(p * q for p, q in zip(x, y))  # noqa: E731  (vectors are normalised)
    assert len(a) == embedder.dim == 384
    assert abs(dot(a, a) - 1.0) < 1e-4
    assert dot(a, b) > dot(a, c) + 0.2


def test_batching_does_not_change_vectors(embedder):
    texts = [f"sentence number {i}" for i in range(5)]
    embedder.batch_size = 2
    small = embedder.embed(texts)
    embedder.batch_size = 32
    big = embedder.embed(texts)
    assert all(abs(x - y) < 1e-5 for u, v in zip(small, big) for x, y in zip(u, v))


def test_int8_onnx_vectors_stay_close_to_fp32_on_real_text(embedder):
    """The quantised runtime on real documentation (the shipped example's docs, chunked as the index does)."""
    from tailorlm.config import EmbedderConfig
    from tailorlm.data.readers.docs import DocText, iter_documents
    from tailorlm.models import get_embedder
    from tailorlm.quickstart import example_dir
    from tailorlm.rag.chunking import chunk_document

    texts = [c.embed_text for _, d in iter_documents("docs", example_dir()) if isinstance(d, DocText)
             for c in chunk_document(d.text, d.format, max_tokens=200)][:120]
    int8 = get_embedder(EmbedderConfig(runtime="onnx-int8"))
    assert int8.session is not None and int8.dim == embedder.dim
    fp32, quantised = embedder.embed(texts), int8.embed(texts)
    cos = [sum(x * y for x, y in zip(u, v)) for u, v in zip(fp32, quantised)]
    assert len(cos) == len(texts) >= 60
    assert min(cos) > 0.95 and sum(cos) / len(cos) > 0.98, (min(cos), sum(cos) / len(cos))
