"""/proc/vmstat snapshots and the deltas that prove a workload stressed mm."""

from __future__ import annotations

# Counter families that show migration, compaction, THP, swap and reclaim activity.
EVIDENCE_PREFIXES = ("pgmigrate_", "compact_", "thp_", "numa_", "pgfault", "ksm_", "cow_ksm", "pswp", "swap_ra",
                     "pgsteal_", "pgscan_", "pgdemote_", "workingset_")


def parse_vmstat(text: str) -> dict[str, int]:
    """Parse `cat /proc/vmstat`; lines that are not `name number` are ignored
    (a printk line may land in the middle of serial output)."""
    counters = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0].replace("_", "").isalnum():
            counters[parts[0]] = int(parts[1])
    return counters


def deltas(before: dict[str, int], after: dict[str, int],
           prefixes: tuple[str, ...] = EVIDENCE_PREFIXES) -> dict[str, int]:
    """after - before for every counter of the given families seen in both."""
    return {name: after[name] - before[name]
            for name in sorted(after)
            if name in before and name.startswith(prefixes)}


def missing_evidence(delta: dict[str, int], evidence: list[str]) -> list[str]:
    """The evidence counters that did not move. An entry `a|b` is met when
    any of its alternatives moved (compaction reports under several names)."""
    missing = []
    for entry in evidence:
        alternatives = entry.split("|")
        if not any(delta.get(name, 0) > 0 for name in alternatives):
            missing.append(entry)
    return missing
