"""Run stage: one boot of one kernel through its workloads (runner.py),
what it needs prepared (prepare.py), which findings are whose (triage.py),
and the record it leaves (record.py, run.schema.json, junit.py, results.py,
verdict.py).

Modes that drive many runs (soak, compare, bisect, matrix) go in
harness/modes/ and drive Runner; they never copy it.
"""
