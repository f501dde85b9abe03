"""The pipeline steps, by the name used under `data.steps` in tailor.yaml.

Steps are found through the `tailorlm.steps` entry points (`plugins.py`): Tailor's own are declared
in its pyproject.toml, and a package of yours adds its steps the same way. A step's module is
imported when the step is used, so reading the config stays fast.
"""

from tailorlm.plugins import registry

STEPS = registry("tailorlm.steps")  # name -> Step subclass

# What `tailor data prepare` runs when tailor.yaml has no `data.steps`.
DEFAULT_STEPS = ["validate", "normalize", "exact_dedup", "near_dedup", "line_dedup", "quality", "language", "pii",
                 "toxicity", "decontaminate", "split"]


def step_class(name: str):
    """The Step subclass registered as `name`; KeyError when no installed package declares it."""
    return STEPS[name]
