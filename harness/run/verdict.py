"""The exit-code policy and the one-screen summary of a run.

Exit codes fit `git bisect run`: 0 clean, 1 kernel findings (a crash, a
hang), 125 could not test (our trouble, a workload that failed or did not
stress), 130 interrupted.
"""

from __future__ import annotations

from harness.errors import EXIT_CLEAN, EXIT_COULD_NOT_TEST, EXIT_FINDINGS, EXIT_INTERRUPTED
from harness.run.record import RunRecord

# A selftest's "not ok" is the kernel failing its own test.
KERNEL_FAILURES = ("kernel", "hang", "selftest")


def exit_code(record: RunRecord) -> int:
    cases = record.testcases
    if record.interrupted:  # what the process exits with, findings or not
        return EXIT_INTERRUPTED
    if any(c.status == "failure" and c.failure_type in KERNEL_FAILURES for c in cases):
        return EXIT_FINDINGS
    if any(c.status in ("error", "failure") for c in cases):
        return EXIT_COULD_NOT_TEST  # our trouble, or a workload that failed or did not stress
    if record.workloads and all(w.skipped for w in record.workloads.values()):
        return EXIT_COULD_NOT_TEST  # nothing was stressed

    return EXIT_CLEAN


def summary(record: RunRecord, run_dir: str) -> str:
    lines = [f"kstress run {record.run_id}  seed {record.seed}  exit {record.exit_code}"]
    for c in record.testcases:
        line = f"  {c.name:<24} {c.status.upper():<8} {c.elapsed:7.1f}s"
        if c.message:
            line += f"  {c.message}"
        subtests = record.workloads[c.name].subtests if c.name in record.workloads else None
        if subtests:
            line += (f"  subtests: {subtests['passed']} passed, {len(subtests['failed'])} failed, "
                     f"{len(subtests['skipped'])} skipped")
        lines.append(line)
    for f in record.findings:
        if f.known_issue:
            lines.append(f"  known issue (not failed): {f.finding.title}: {f.known_issue}")
    lines.append(f"results: {run_dir}")
    return "\n".join(lines) + "\n"
