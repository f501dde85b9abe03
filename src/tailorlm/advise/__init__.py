"""Advise: which rung to try next and what it will cost (`tailor advise`, `tailor costs`).

facts.py gathers what a project holds, advisor.py decides, costs.py prices, report.py renders.
"""
