"""The feedback loop: feedback -> curated data -> retrain -> gate -> promote (or not)."""
