"""Local embeddings with sentence-transformers; the embedded default is all-MiniLM-L6-v2."""

import os

from tailorlm.errors import ModelNotAvailable


class LocalEmbedder:
    """Embed texts in-process. Vectors are L2-normalised, so a dot product is a cosine.

    >>> LocalEmbedder.load("all-minilm-l6-v2").embed(["hello"])[0][:2]  # doctest: +SKIP
    [-0.034, 0.031]
    """

    def __init__(self, model, name: str, batch_size: int = 32):
        self.model, self.name, self.batch_size = model, name, batch_size
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = get_dim()

    @classmethod
    def load(cls, model: str, batch_size: int = 32, trust_remote_code: bool = False) -> "LocalEmbedder":
        from tailorlm.models import embedded
        from tailorlm.models.local import resolve_model_path

        if model in embedded.EMBEDDED:
            # The embedded model is a plain local folder; never let the hub client go looking.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = resolve_model_path(model)
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no bar per load; Tailor shows its own progress

        try:
            st = SentenceTransformer(path, device="cpu", trust_remote_code=trust_remote_code)
        except OSError as e:
            raise ModelNotAvailable(f"cannot load embedder {model!r}: {str(e).splitlines()[0]}") from e
        return cls(st, model, batch_size)

    def embed(self, texts: list[str], progress: bool = False) -> list[list[float]]:
        vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=progress)
        return vecs.tolist()
