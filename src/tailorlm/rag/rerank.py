"""Rerankers for retrieved candidates: the generator as a judge of relevance, or a cross-encoder.

`rag.rerank` in tailor.yaml picks one (`none`, `llm`, `cross-encoder:PATH`); the rag rung and
`tailor rag eval --rerank` both take it from `make_reranker`.
"""

import re

from tailorlm.models.base import GenParams


def llm_reranker(generator):
    """Rerank candidates by asking the generator how relevant each is (0-10). Slow, and only as
    good as the generator: off by default, and measured by `tailor rag eval --rerank llm`."""

    def rerank(question: str, hits: list) -> list:
        scored = []
        for hit in hits:
            prompt = (f"Question: {question}\n\nPassage:\n<<<\n{hit.text[:1500]}\n>>>\n\n"
                      "How relevant is the passage to the question, from 0 (not at all) to 10 (answers it)? "
                      "Reply with the number only.")
            reply = generator.generate([{"role": "user", "content": prompt}], GenParams(max_tokens=4)).text
            m = re.search(r"\d+", reply)
            scored.append((min(int(m.group()), 10) if m else 0, hit))
        return [h for _, h in sorted(scored, key=lambda sh: -sh[0])]  # stable: ties keep retrieval order

    return rerank


def cross_encoder_reranker(path: str):
    """Rerank with a local sentence-transformers cross-encoder model folder."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(path, device="cpu")

    def rerank(question: str, hits: list) -> list:
        scores = model.predict([(question, h.text) for h in hits])
        return [h for _, h in sorted(zip(scores, hits), key=lambda sh: -float(sh[0]))]

    return rerank


def make_reranker(spec: str, generator=None):
    if spec == "none":
        return None
    if spec == "llm":
        return llm_reranker(generator)
    return cross_encoder_reranker(spec.partition(":")[2])
