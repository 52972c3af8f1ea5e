"""The record of one run, as typed objects, and the results directory that
holds it.

run.json is written from these objects and described by run.schema.json
(format_version lets soak and compare read old runs). It is rewritten
atomically after every stage, with junit.xml and summary.txt, so a run
killed at any point leaves the record of what it had collected.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.cache import atomic_write_bytes
from harness.console import Finding
from harness.paths import kstress_identity

FORMAT_VERSION = 1


@dataclass
class CaseResult:
    """One testcase. Names are stable from night to night (no seed, no time),
    so that Jenkins keeps their history."""

    name: str
    classname: str = "kstress"
    status: str = "passed"          # passed | failure | error | skipped
    message: str = ""
    text: str = ""
    failure_type: str = ""          # kernel | hang | workload | no-evidence | kstress | not-run | ...
    elapsed: float = 0.0
    stdout: str = ""
    known_issues: list[str] = field(default_factory=list)   # triaged findings, reported, not failed
    informational: list[str] = field(default_factory=list)  # e.g. the OOM killer at work

    def fail(self, message: str, text: str, failure_type: str) -> None:
        if self.status == "failure":
            self.text += "\n\n" + text
            # A kernel finding outranks any other failure of the same case.
            if failure_type == "kernel" and self.failure_type != "kernel":
                self.message, self.failure_type = message, failure_type
            return
        self.status, self.message, self.text, self.failure_type = "failure", message, text, failure_type

    def error(self, message: str, text: str = "") -> None:
        if self.status == "failure":
            self.text += "\n\n" + f"{message}\n{text}"
            return
        self.status, self.message, self.text, self.failure_type = "error", message, text, "kstress"

    def skip(self, message: str, failure_type: str = "skipped") -> None:
        self.status, self.message, self.failure_type = "skipped", message, failure_type

    def append_stdout(self, text: str) -> None:
        self.stdout = f"{self.stdout}\n{text}" if self.stdout else text


@dataclass
class KernelRecord:
    key: str
    artifact_dir: str
    cache_hit: bool
    config_sha256_16: str
    meta: dict[str, Any]  # the cache entry's meta.json, as written by the kernel stage


@dataclass
class SwapRecord:
    kind: str  # disk | zram
    device: str
    size_mb: int
    swapon: str  # /proc/swaps after swapon


@dataclass
class HotplugRecord:
    dimms: int
    dimm_mb: int
    blocks_added: list[str] = field(default_factory=list)
    onlined: int = 0
    offlined: int = 0
    offline_failures: list[str] = field(default_factory=list)  # "memory42: Device or resource busy"
    reonlined: int = 0
    seconds: float = 0.0


@dataclass
class GuestRecord:
    accel: str
    cmdline: str
    tcg_relaxations: str
    image: str = "initramfs"
    qemu_argv: list[str] = field(default_factory=list)
    qemu_command: str = ""
    seconds_to_ready: float | None = None
    seconds_to_ssh: float | None = None  # from QEMU's start, Debian image only
    channel: str = ""  # SshChannel | SerialChannel
    swap: SwapRecord | None = None
    hotplug: HotplugRecord | None = None
    restarts: list[str] = field(default_factory=list)  # why kstress replaced the guest, in order


@dataclass
class WorkloadRecord:
    kind: str
    argv: list[str]
    duration: int
    stresses: list[str]
    evidence: list[str]
    exit_status: int | None = None
    timed_out: bool = False
    seconds: float | None = None
    vmstat_delta: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None  # why it did not run
    guest_uptime: float | None = None  # /proc/uptime as it started: places console timestamps in it


@dataclass
class GuestEvent:
    during: str     # the testcase under way
    event: str      # GuestDied | GuestSilent | BootTimeout | ...
    detail: str


@dataclass
class FindingRecord:
    testcase: str
    known_issue: str | None  # the known issue's reason, when triaged
    finding: Finding

    def to_dict(self) -> dict[str, Any]:
        return dict(self.finding.to_dict(), testcase=self.testcase, known_issue=self.known_issue)


@dataclass
class RunRecord:
    run_id: str
    seed: int
    config: dict[str, Any]
    host: str = field(default_factory=socket.gethostname)
    started: float = field(default_factory=time.time)
    updated: float | None = None
    finished: float | None = None
    status: str = "running"  # running | finished
    exit_code: int | None = None
    interrupted: str | None = None  # SIGINT | SIGTERM
    properties: dict[str, str] = field(default_factory=dict)
    kernel: KernelRecord | None = None
    guest: GuestRecord | None = None
    workloads: dict[str, WorkloadRecord] = field(default_factory=dict)
    guest_events: list[GuestEvent] = field(default_factory=list)
    findings: list[FindingRecord] = field(default_factory=list)
    testcases: list[CaseResult] = field(default_factory=list)
    kstress: dict[str, Any] = field(default_factory=lambda: dict(kstress_identity()))  # version, commit, dirty
    format_version: int = FORMAT_VERSION

    def case(self, name: str) -> CaseResult:
        for c in self.testcases:
            if c.name == name:
                return c
        c = CaseResult(name=name)
        self.testcases.append(c)
        return c

    def set_property(self, name: str, value: Any) -> None:
        self.properties[name] = "" if value is None else str(value)

    def to_dict(self) -> dict[str, Any]:
        findings = [f.to_dict() for f in self.findings]
        out = asdict(self)  # recurses into the nested records
        out["findings"] = findings
        return out


def atomic_write_text(path: Path, text: str) -> None:
    # Readable by the CI user that collects results (mkstemp makes files private).
    atomic_write_bytes(path, text.encode("utf-8"), mode=0o644)


def write_run_json(run_dir: Path, record: RunRecord) -> None:
    record.updated = time.time()
    atomic_write_text(run_dir / "run.json", json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")
