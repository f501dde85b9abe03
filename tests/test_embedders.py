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
