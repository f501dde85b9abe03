"""Weight-only quantisation of a loaded local model (`models.generator.quant`, `tailor serve --quant`).

`int8` replaces every linear layer's weight with torchao's `Int8Tensor`: int8 values with one
float scale per output channel, de-quantised inside the matrix product, so activations stay float32.
The tied output projection gets its own int8 copy and the embedding table stays float32. LoRA
adapters still attach on top (peft's torchao LoRA layer); merging into int8 weights is not possible.

What it buys on a CPU (benchmarks/quant.py, docs/benchmarks.md): the linear weights take a quarter
of the memory; decoding is not faster in eager mode on x86 (torchao's CPU path de-quantises per call).

>>> quantize(model, "int8")  # doctest: +SKIP
"""

import logging

from tailorlm.errors import TailorError

QUANTS = ("none", "int8")


def quantize(model, quant: str):
    """Quantise `model` in place (returns it); `none` leaves it as it is."""
    if quant not in QUANTS:
        raise TailorError(f"unknown quantisation {quant!r}; choose one of {', '.join(QUANTS)}")
    if quant == "none":
        return model
    try:
        # torchao logs every optional GPU kernel library it cannot load on a CPU-only torch, and its
        # import registers an Enum with torch's pytree, which torch 2.13 logs as deprecated.
        loggers = [logging.getLogger(), logging.getLogger("torch.utils._pytree")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            from torchao.quantization import Int8WeightOnlyConfig, quantize_
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
    except ImportError as e:
        raise TailorError(f"quant: int8 needs torchao ({e}); pip install 'tailorlm[quant]'") from e
    quantize_(model, Int8WeightOnlyConfig())
    return model


def weight_bytes(model) -> int:
    """Bytes held by the model's parameters as stored (int8 values and their scales for quantised ones)."""
    total = 0
    for p in model.parameters():
        inner = [getattr(p, name) for name in getattr(p, "__tensor_flatten__", lambda: ([], None))()[0]] or [p]
        total += sum(t.numel() * t.element_size() for t in inner)
    return total
