"""The data stage: sources -> validated, cleaned, deduplicated, PII-free, split, versioned datasets.

`readers/` turn sources into Records, `steps/` are the pipeline stages (each a small class that
counts what it kept and dropped, and quarantines every drop with its reason), `pipeline.py` runs
them, and `versions.py` stores the result as an immutable, content-addressed dataset version.
"""
