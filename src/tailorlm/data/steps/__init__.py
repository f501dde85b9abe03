"""The pipeline steps, by the name used under `data.steps` in tailor.yaml.

Modules are imported when a step is used, so reading the config stays fast.
"""

from importlib import import_module

STEPS = {
    "validate": "tailorlm.data.steps.validate:Validate",
    "normalize": "tailorlm.data.steps.normalize:Normalize",
    "exact_dedup": "tailorlm.data.steps.dedup:ExactDedup",
    "near_dedup": "tailorlm.data.steps.dedup:NearDedup",
    "line_dedup": "tailorlm.data.steps.dedup:LineDedup",
    "quality": "tailorlm.data.steps.quality:Quality",
    "perplexity": "tailorlm.data.steps.quality:PerplexityFilter",
    "language": "tailorlm.data.steps.language:Language",
    "pii": "tailorlm.data.steps.pii:Pii",
    "toxicity": "tailorlm.data.steps.toxicity:Toxicity",
    "decontaminate": "tailorlm.data.steps.decontaminate:Decontaminate",
    "mix": "tailorlm.data.steps.mix:Mix",
    "split": "tailorlm.data.steps.split:Split",
}

# What `tailor data prepare` runs when tailor.yaml has no `data.steps`.
DEFAULT_STEPS = ["validate", "normalize", "exact_dedup", "near_dedup", "line_dedup", "quality", "language", "pii",
                 "toxicity", "decontaminate", "split"]


def step_class(name: str):
    if name not in STEPS:
        raise KeyError(name)
    module, _, cls = STEPS[name].partition(":")
    return getattr(import_module(module), cls)
