"""What the runner records of a stage's outcome: the kernel it built, and a
workload's verdict by its kind (exit status, or a selftest's TAP) and from
its vmstat evidence."""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness import log
from harness.kernel import KernelBuild
from harness.run.record import CaseResult, KernelRecord, RunRecord, WorkloadRecord
from harness.stress import adapters
from harness.stress.manifest import Workload
from harness.stress.vmstat import deltas, missing_evidence

EVIDENCE_PROPERTIES = ("pgmigrate_", "compact_", "thp_", "pswp")  # vmstat deltas shown as JUnit properties


def record_kernel(record: RunRecord, kernel: KernelBuild) -> None:
    config_hash = hashlib.sha256(Path(kernel.config).read_bytes()).hexdigest()[:16]
    record.kernel = KernelRecord(key=kernel.key, artifact_dir=str(kernel.artifact_dir),
                                 cache_hit=kernel.cache_hit, config_sha256_16=config_hash, meta=kernel.meta)
    names = [p["name"] for p in kernel.meta.get("patches") or []]
    for name, value in (("kernel_version", kernel.meta.get("kernel_version")), ("config_hash", config_hash),
                        ("patch_series", ", ".join(names) or "none"), ("kernel_key", kernel.key)):
        record.set_property(name, value)


def judge_workload(record: RunRecord, case: CaseResult, w: Workload, entry: WorkloadRecord, output: str,
                   after: dict[str, int], before: dict[str, int]) -> None:
    """A workload that finished in time: failed if its kind's verdict says so
    (a non-zero exit status; a selftest's "not ok") or its evidence counters
    did not move; skipped if it ran and says it could test nothing here."""
    delta = entry.vmstat_delta = deltas(before, after)
    name = case.name
    for counter in sorted(delta):
        if counter.startswith(EVIDENCE_PROPERTIES):
            record.set_property(f"vmstat.{name}.{counter}", delta[counter])
    outcome = adapters.judge(w, entry.exit_status, output)
    entry.subtests = outcome.subtests
    for what, n in outcome.counts.items():
        record.set_property(f"subtests.{name}.{what}", n)
    if outcome.skipped:
        entry.skipped = outcome.skipped
        case.skip(f"skipped: {outcome.skipped}", "skipped-in-guest")
        log.warn(f"workload {name} skipped: {outcome.skipped}")
        return
    if outcome.failure:
        case.fail(*outcome.failure)
    missing = missing_evidence(delta, entry.evidence)
    if missing:
        case.fail(f"no evidence of stress: {', '.join(missing)} did not move",
                  "vmstat deltas:\n" + "\n".join(f"{k} {v}" for k, v in delta.items()), "no-evidence")
