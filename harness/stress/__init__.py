"""Stress stage: workload manifests and their registry (manifest.py), one
adapter per workload kind (adapters/), and the /proc/vmstat evidence that a
workload stressed what it claims (vmstat.py)."""
