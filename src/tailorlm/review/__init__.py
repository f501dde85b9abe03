"""Human review: people check data, rate answers side by side and work the feedback queue.

The library behind `tailor review` and the workbench (`tailor ui`); each function is also an HTTP
endpoint under the UI's `/api/`. Modules:
- `data.py`: expert review of a seeded sample of a dataset version (pass / fail / edit, pass rate
  with its interval against a target, fails and edits become a new version with lineage);
- `pairs.py`: blind side-by-side human eval of two subjects on a suite (1-5 ratings or a preference,
  paired intervals, win rate, the "B better than A by 20%" rule on its interval, DPO export);
- `agreement.py`: inter-rater and judge-human agreement (Krippendorff's alpha, Cohen's kappa, Spearman);
- `judge.py`: how well an LLM judge's scores agree with the people's on the same answers;
- `queue.py`: the feedback queue (worst served answers first; corrections feed `tailor loop`);
- `report.py`: everything reviewed so far, in one object.

State lives in the store tables of migration 003_human_review, with who, when and which item.
"""
