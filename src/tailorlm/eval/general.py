"""The general-capability suite that ships with Tailor: the regression gate's check for forgetting.

Fine-tuning on an organisation's data can make a model worse at everything else. The gate scores
the base model and each candidate on `suites/general.jsonl` (40 short questions with one-word or
one-number references: arithmetic, capitals, common facts, units, days and months, one-line
instructions) with the `contains` metric, and a significant drop blocks promotion.

The questions are easy on purpose, but not too easy, so that a change shows in either direction:
the embedded SmolLM2-135M-Instruct, greedy with max_tokens 32 and no system prompt, answers 25 of
the 40 (0.625, Wilson 95% CI 0.47-0.76), the same batched (8) or one at a time. Every reference is
factually right; the wrong answers are the model's.
"""

from importlib import resources
from pathlib import Path

GENERAL_METRIC = "contains"  # references are short, answers are free text


def general_suite_path() -> Path:
    """The shipped suite, as eval records (`id`, `input` messages, `reference`, `labels`).

    >>> general_suite_path().name
    'general.jsonl'
    """
    return Path(str(resources.files("tailorlm").joinpath("suites/general.jsonl")))
