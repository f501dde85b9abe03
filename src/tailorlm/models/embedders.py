"""Local embeddings with sentence-transformers; the embedded default is all-MiniLM-L6-v2.

`runtime: torch` (the default) runs the model as sentence-transformers loads it. `runtime: onnx-int8`
exports the transformer once to ONNX, quantises its weights to int8 (onnxruntime's dynamic
quantisation, per output channel), caches the file beside the model cache, and runs it with
onnxruntime; tokenising and pooling stay sentence-transformers' own, so only the matrix products
change. On this machine's 2 cores that embedded 3.9x the chunks per second alone (1.7-2x in a benchmark run under heavy load), at a mean cosine of 0.99
to the fp32 vectors (docs/benchmarks.md). `runtime: onnx` is the same export without quantisation.
"""

import hashlib
import os
from pathlib import Path

from tailorlm.errors import ModelNotAvailable

RUNTIMES = ("torch", "onnx", "onnx-int8")
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class LocalEmbedder:
    """Embed texts in-process. Vectors are L2-normalised, so a dot product is a cosine.

    >>> LocalEmbedder.load("all-minilm-l6-v2").embed(["hello"])[0][:2]  # doctest: +SKIP
    [-0.034, 0.031]
    """

    def __init__(self, model, name: str, batch_size: int = 32, runtime: str = "torch", session=None):
        self.model, self.name, self.batch_size, self.runtime = model, name, batch_size, runtime
        self.session = session  # an onnxruntime session replacing the transformer's forward pass
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = get_dim()

    @classmethod
    def load(cls, model: str, batch_size: int = 32, trust_remote_code: bool = False, runtime: str = "torch") -> "LocalEmbedder":
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
        session = None if runtime == "torch" else onnx_session(st, path, quantize=runtime == "onnx-int8")
        return cls(st, model, batch_size, runtime, session)

    def embed(self, texts: list[str], progress: bool = False) -> list[list[float]]:
        if self.session is not None:
            return self._embed_onnx(texts).tolist()
        vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=progress)
        return vecs.tolist()

    def _embed_onnx(self, texts: list[str]):
        import numpy as np
        import torch

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Longest first, so each batch pads to texts of about its own length (as encode() does).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        names = {i.name for i in self.session.get_inputs()}
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            features = self.model.preprocess([texts[i] for i in rows])
            feeds = {k: v.numpy().astype(np.int64) for k, v in features.items() if k in names}
            hidden = self.session.run(None, feeds)[0]
            features["token_embeddings"] = torch.from_numpy(hidden)
            # The model's own pooling (and normalisation, when it has that module) after the transformer.
            for module in list(self.model)[1:]:
                features = module(features)
            vecs = torch.nn.functional.normalize(features["sentence_embedding"], dim=-1)
            out[rows] = vecs.numpy()
        return out


def onnx_session(st, model_path: str, quantize: bool):
    """An onnxruntime session for `st`'s transformer: exported once (and quantised once) into the cache."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ModelNotAvailable("the onnx embedder runtimes need onnxruntime: pip install 'tailorlm[onnx]'") from e
    import torch

    from tailorlm.paths import cache_dir

    key = hashlib.sha256(str(Path(model_path).resolve()).encode()).hexdigest()[:12]
    folder = cache_dir() / "onnx" / f"{Path(model_path).name}-{key}"
    fp32, int8 = folder / "model.onnx", folder / "model.int8.onnx"
    if not fp32.exists():
        _export(st, folder, fp32)
    path = fp32
    if quantize:
        if not int8.exists():
            import logging

            from onnxruntime.quantization import QuantType, quantize_dynamic

            # onnxruntime logs a suggestion to pre-process the graph at WARNING; its shape inference
            # fails on this graph, and quantising without it keeps cosine >= 0.98 to fp32 (tested).
            root = logging.getLogger()
            level = root.level
            root.setLevel(max(level, logging.ERROR))  # only while quantising: the caller's logging is theirs
            try:
                tmp = int8.with_suffix(".tmp")
                quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8, per_channel=True)
                tmp.replace(int8)
            finally:
                root.setLevel(level)
        path = int8
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export(st, folder: Path, target: Path) -> None:
    import warnings

    import torch

    transformer = st[0].auto_model.eval()
    present = [n for n in ONNX_INPUTS if n in st.preprocess(["a"])]

    class Hidden(torch.nn.Module):  # the last hidden state only: what sentence-transformers pools
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    sample = st.preprocess(["an example sentence to trace", "another"])
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=st.max_seq_length)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own notes about its internals, once per model
        torch.onnx.export(Hidden(transformer), tuple(sample[n] for n in present), str(tmp), input_names=present,
                          output_names=["last_hidden_state"], dynamic_shapes={n: {0: batch, 1: seq} for n in present},
                          dynamo=True, external_data=False, verbose=False)
    tmp.replace(target)
