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


def test_soak_of_many_restarted_boots_names_each_findings_boot(tmp_path):
    """A soak that restarts its guest: WARNINGs that repeat in the first boot, a clean
    boot, an oops in the third: one finding per boot that had one, no reboot finding."""
    warning = (CAPTURED / "warning-6.12-deferred-split-folio-unpatched-1.log").read_bytes()
    clean = (CAPTURED / "clean-6.12-migrate_fork-1.log").read_bytes()
    bug = (CAPTURED / "swapops-6.12-fork-1.log").read_bytes()
    restart = f"{RESTART_MARKER}: workload migrate_fork hung\n".encode()
    clean_cut = clean[:clean.index(b"reboot: Power down")]
    console = tmp_path / "console.log"
    console.write_bytes(warning + b"\n" + restart + clean_cut + b"\n" + restart + bug)
    findings = [f for f in analyze_file(console) if not f.informational]
    assert [(f.title, f.boot) for f in findings] == [("WARNING in deferred_split_folio", 0),
                                                     ("kernel BUG in pfn_swap_entry_folio", 2)]
    assert all(f.kernel_version and f.kernel_version.startswith("6.12") for f in findings)
    assert len(findings[0].aftermath) >= 4      # the WARNING's repeats in its boot
