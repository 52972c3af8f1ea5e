"""Modes that drive many runs: soak, compare, bisect, matrix.

Each builds RunConfigs and drives harness.run.runner.Runner, one boot of one
kernel at a time, and reads the RunRecords it leaves (run.json carries a
format_version for records of older kstress versions). A mode never copies
the runner's stages.
"""
