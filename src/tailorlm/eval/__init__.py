"""Evaluation: suites, metrics, judges, paired confidence intervals and the regression gate.

`stats.py` holds the confidence intervals and paired significance tests that every comparison in
Tailor reports, and `retrieval.py` scores ranked retrieval results; `tailor eval`, `tailor compare`,
`tailor rag eval` and the ladder build on them.
"""
