"""Readers: turn a source (a file, a glob, a folder of documents) into Records.

`records.py` reads JSONL, CSV and Parquet, detecting each line's format; `docs.py` reads
document folders. A reader never raises for one bad line or file: it yields a `Rejected` with
file, line, field and reason, and the pipeline quarantines it.
"""
