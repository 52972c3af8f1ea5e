"""A restart that kstress made is never an "unexpected kernel reboot", and
each finding names its boot and kernel version."""

from pathlib import Path

from harness.console import analyze_file
from harness.guest.machine import RESTART_MARKER

CAPTURED = Path(__file__).parent / "data" / "console-captured"


def test_kstress_restart_is_not_a_kernel_reboot(tmp_path):
    clean = (CAPTURED / "clean-6.12-migrate_fork-1.log").read_bytes()
    bug = (CAPTURED / "swapops-6.12-fork-1.log").read_bytes()
    cut = clean.index(b"reboot: Power down")  # the first guest hangs before its end: kstress kills it
    console = tmp_path / "console.log"
    console.write_bytes(clean[:cut] + b"\n" + f"{RESTART_MARKER}: workload migrate_fork hung\n".encode() + bug)
    findings = analyze_file(console)
    assert [f.title for f in findings] == ["kernel BUG in pfn_swap_entry_folio"]
    assert findings[0].boot == 1 and findings[0].kernel_version.startswith("6.12")


def test_a_reboot_without_the_marker_is_still_reported(tmp_path):
    clean = (CAPTURED / "clean-6.12-migrate_fork-1.log").read_bytes()
    cut = clean.index(b"reboot: Power down")
    console = tmp_path / "console.log"
    console.write_bytes(clean[:cut] + b"\n" + clean)
    assert "unexpected kernel reboot" in [f.title for f in analyze_file(console)]
