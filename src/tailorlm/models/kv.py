"""The KV cache's keyword, across transformers versions.

transformers 5.24 renamed the forward argument and output `past_key_values` to `cache` and warns on
the old name (it goes in 5.40); older releases know only `past_key_values`. Every call that passes
or reads a cache goes through these two helpers, so Tailor's own calls never warn on either side.
"""

from functools import lru_cache


@lru_cache(maxsize=1)
def cache_kwarg() -> str:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "cache" if (major, minor) >= (5, 24) else "past_key_values"


def with_cache(cache) -> dict:
    """The forward keyword that passes `cache`: `model(input_ids=..., **with_cache(cache))`."""
    return {cache_kwarg(): cache}


def returned_cache(out):
    """The cache a forward pass returned (None when it returned none)."""
    return out.get(cache_kwarg())


def layers_of(cache) -> list:
    """A DynamicCache's per-layer (keys, values), each (rows, heads, columns, head_dim)."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def cache_of(layers):
    """A DynamicCache holding `layers` (as `layers_of` returns them)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, (k, v) in enumerate(layers):
        cache.update(k, v, i)
    return cache
