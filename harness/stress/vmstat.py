"""/proc/vmstat snapshots and the deltas that prove a workload stressed mm."""

from __future__ import annotations

# Counter families that show migration, compaction, THP, KSM, swap and reclaim
# activity (slabs_scanned: objects reclaim asked the shrinkers to scan;
# cow_ksm: writes that broke COW on a KSM page, CONFIG_KSM; drop_: writes to
# /proc/sys/vm/drop_caches). A manifest's evidence is one of these.
EVIDENCE_PREFIXES = ("pgmigrate_", "compact_", "thp_", "numa_", "pgfault", "ksm_", "cow_ksm", "pswp", "swap_ra",
                     "pgsteal_", "pgscan_", "pgdemote_", "workingset_", "slabs_scanned", "drop_")


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


def per_minute(delta: dict[str, int], seconds: float | None, counters: list[str]) -> dict[str, float]:
    """How fast ``counters`` moved: events per minute of ``seconds`` (none when it is unknown)."""
    if not seconds or seconds <= 0:
        return {}
    return {c: round(delta.get(c, 0) * 60.0 / seconds, 1) for c in counters}


def below_floors(rates: dict[str, float], floors: dict[str, float]) -> list[tuple[str, float, float]]:
    """(counter, per minute, floor) of each counter that moved slower than its floor."""
    return [(c, rates[c], floor) for c, floor in sorted(floors.items()) if c in rates and rates[c] < floor]
