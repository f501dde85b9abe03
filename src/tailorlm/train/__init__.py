"""Training: LoRA/QLoRA/full SFT, DPO, continued pre-training and small pre-training, resumable runs, model versions and export."""

from tailorlm.callables import callable_package  # noqa: E402  (`tailorlm.train(...)` calls tailorlm.api.train)

callable_package(__name__)
