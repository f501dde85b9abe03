"""Training: LoRA/QLoRA/full SFT, DPO, continued pre-training and small pre-training, resumable runs, model versions and export."""
