"""Models: the embedded offline defaults, and the backends every rung generates and embeds through.

`get_generator(cfg)` and `get_embedder(cfg)` turn a tailor.yaml model section into a ready object.
"""

from tailorlm.config import EmbedderConfig, GeneratorConfig


def get_generator(cfg: GeneratorConfig):
    """A generator for a `models.generator`-style config section."""
    if cfg.backend == "openai":
        from tailorlm.models.openai_compat import OpenAIGenerator

        return OpenAIGenerator(cfg.base_url, cfg.model, cfg.api_key_env)
    from tailorlm.models.local import LocalGenerator

    return LocalGenerator.load(cfg.model, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code,
                               quant=cfg.quant)


def get_embedder(cfg: EmbedderConfig):
    """An embedder for a `models.embedder` config section."""
    if cfg.backend == "openai":
        from tailorlm.models.openai_compat import OpenAIEmbedder

        return OpenAIEmbedder(cfg.base_url, cfg.model, cfg.api_key_env, cfg.batch_size)
    from tailorlm.models.embedders import LocalEmbedder

    return LocalEmbedder.load(cfg.model, batch_size=cfg.batch_size, runtime=cfg.runtime)
