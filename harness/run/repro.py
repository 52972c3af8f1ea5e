"""`kstress run --repro RUN_DIR`: run again exactly what a run did.

Its run.json holds all of it: the config as it ran (kernel source, ref,
patches and fragments, which of the config's kernels it was, the guest, the
workloads in their order with their durations), the seed, the kernel's
cache key, the accelerator the guest had, the QEMU command line, and the
kstress that ran it (version, git commit). The repro runs that config with
that seed on the accelerator the run had (--accel overrides), on the
cache's kernel of that key; when the cache no longer holds it, the kernel
is built again from the recorded inputs, and a different key is said. What
it cannot pin it says: the workloads and harness of another kstress commit.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness import log
from harness.config import RunConfig, apply_overrides, config_from_dict
from harness.errors import UsageError
from harness.paths import kstress_identity
from harness.run.record import FORMAT_VERSION

REPRO_PROPERTY = "repro_of"  # the new run's JUnit property: the run it repeats
# What every boot makes anew in the QEMU command line: the machine's name, its temporary directories.
_PER_BOOT = ((re.compile(r"kstress-\d+-\d+-[0-9a-f]+"), "<name>"),
             (re.compile(r"[^,=:]*/kstress-(?:run|guest)-[^/,]+"), "<tmp>"))


def repro_command(run_dir: str | Path) -> str:
    return shlex.join(["kstress", "run", "--repro", str(run_dir)])


@dataclass
class Repro:
    run_dir: Path
    run_id: str
    cfg: RunConfig
    kernel_key: str | None
    qemu_argv: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what differs from the run, said before it starts

    def announce(self) -> None:
        w = ", ".join(f"{c.name} {c.duration}s" for c in self.cfg.workloads)
        log.info(f"repro of run {self.run_id}: kernel {self.cfg.kernel_name} (key {self.kernel_key or '?'}), "
                 f"seed {self.cfg.seed}, accel {self.cfg.accel}, workloads {w}")
        if self.qemu_argv:
            log.info(f"the run's QEMU command line: {shlex.join(self.qemu_argv)}")
        for note in self.notes:
            log.warn(note)

    def compare_qemu(self, argv: list[str]) -> str:
        """How the repro's QEMU command line differs from the run's ("" if only in what each boot makes anew)."""
        then, now = qemu_shape(self.qemu_argv), qemu_shape(argv)
        if not then or not now or then == now:
            return ""
        return (f"the QEMU command line differs from the run's: the run's had "
                f"{' '.join(a for a in then if a not in now) or '-'}; this one has "
                f"{' '.join(a for a in now if a not in then) or '-'}")


def qemu_shape(argv: list[str]) -> list[str]:
    """``argv`` without what each boot makes anew (its name, its temporary directories)."""
    out = []
    for arg in argv:
        for pattern, placeholder in _PER_BOOT:
            arg = pattern.sub(placeholder, arg)
        out.append(arg)
    return out


def load_repro(run_dir: str | Path, results: str | None = None, accel: str | None = None) -> Repro:
    run_dir = Path(run_dir).expanduser().resolve()
    data = _run_json(run_dir)
    try:
        cfg = config_from_dict(data["config"])
    except UsageError as exc:
        raise UsageError(f"{run_dir / 'run.json'}: config: {exc}") from None
    cfg.seed = data["seed"]
    ran = data.get("workloads") or {}
    for choice in cfg.workloads:  # the durations it ran, whatever the manifests say now
        if choice.name in ran:
            choice.duration = ran[choice.name]["duration"]
    guest = data.get("guest") or {}
    cfg = apply_overrides(cfg, results=results or Path.cwd() / "results", accel=accel or guest.get("accel"))
    repro = Repro(run_dir, data["run_id"], cfg, (data.get("kernel") or {}).get("key"), guest.get("qemu_argv") or [])
    then, now = data.get("kstress") or {}, kstress_identity()
    if then.get("commit") and now["commit"] and then["commit"] != now["commit"]:
        repro.notes.append(f"the run was made by kstress {then['commit'][:12]}, this is {now['commit'][:12]}: "
                           f"its workloads and harness may differ")
    if then.get("dirty"):
        repro.notes.append("the run's kstress checkout had uncommitted changes: its workloads may differ")
    if not then:
        repro.notes.append("the run's record does not say which kstress made it (an older run.json)")
    return repro


def _run_json(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--repro {run_dir}: no run.json there (expected a run's results directory, "
                         f"results/<run-id>/)") from None
    except NotADirectoryError:
        raise UsageError(f"--repro {run_dir}: not a directory") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION or "config" not in data:
        raise UsageError(f"{path}: not a run record this kstress reads (format_version "
                         f"{data.get('format_version') if isinstance(data, dict) else '?'}, expected {FORMAT_VERSION})")
    return data
