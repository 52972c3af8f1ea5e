"""stress-ng workloads: Debian's stress-ng, nothing to build. The guest runs
ks-stress-ng (workloads/lib/ks_stress_ng.py), which runs stress-ng with the
manifest's arguments plus --timeout, --seed, --verify, --metrics-brief and
--yaml, prints a key=value summary and maps stress-ng's exit status to ours
(1: a stressor failed, the kernel's fault; 125: stress-ng's own trouble)."""

from __future__ import annotations

from pathlib import Path

from harness.paths import WORKLOADS_DIR
from harness.stress.adapters.python import check_script
from harness.stress.manifest import STRESS_NG_RUNNER, Workload

RUNNER_SOURCE = WORKLOADS_DIR / "lib" / "ks_stress_ng.py"


def guest_files(w: Workload, cache_dir: Path | None = None) -> dict[str, Path]:
    return {STRESS_NG_RUNNER: check_script(RUNNER_SOURCE)}
