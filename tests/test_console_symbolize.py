"""Symbolization against a real vmlinux: $KSTRESS_VMLINUX if set, else the
vmlinux of the session's build of the default kernel (conftest.default_kernel).

The test finds, in the vmlinux itself, a BUG (ud2) inlined from
pfn_swap_entry_folio into migration_entry_wait_on_locked, and writes the
console report that BUG would print; the analyzer must name the inlined helper.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_console_data import DATA_DIR, read_console_case

from harness.console import analyze_text
from harness.console.symbolize import SymbolizeError
from harness.errors import CouldNotTest

HOST_FUNC, HELPER = "migration_entry_wait_on_locked", "pfn_swap_entry_folio"
needs_binutils = pytest.mark.skipif(not all(shutil.which(t) for t in ("nm", "objdump", "addr2line")),
                                    reason="needs binutils (nm, objdump, addr2line)")


@pytest.fixture(scope="module")
def vmlinux(request) -> Path:
    path = os.environ.get("KSTRESS_VMLINUX")
    if path:
        if not Path(path).is_file():
            pytest.skip(f"KSTRESS_VMLINUX={path} is not a file")
        return Path(path)
    return Path(request.getfixturevalue("default_kernel").vmlinux)


def _planted_bug_site(vmlinux: Path):
    """(offset, size, BUG line) of a ud2 in HOST_FUNC whose inline chain has HELPER."""
    nm = subprocess.run(["nm", "-S", str(vmlinux)], capture_output=True, text=True, check=True).stdout
    match = re.search(r"^([0-9a-f]+) ([0-9a-f]+) [tT] " + HOST_FUNC + "$", nm, re.M)
    if not match:
        pytest.skip(f"{vmlinux} has no {HOST_FUNC}")
    start, size = int(match.group(1), 16), int(match.group(2), 16)
    dump = subprocess.run(["objdump", "-d", f"--start-address={start:#x}", f"--stop-address={start + size:#x}",
                           str(vmlinux)], capture_output=True, text=True, check=True).stdout
    for address in re.findall(r"^([0-9a-f]+):\s+0f 0b\s+ud2", dump, re.M):
        chain = subprocess.run(["addr2line", "-f", "-i", "-e", str(vmlinux), "0x" + address],
                               capture_output=True, text=True, check=True).stdout.split("\n")
        if HELPER in chain:
            line = chain[chain.index(HELPER) + 1].rsplit(":", 1)[1].split()[0]
            return int(address, 16) - start, size, line
    pytest.skip(f"no BUG inlined from {HELPER} in {HOST_FUNC} in this build")


@pytest.mark.e2e
@needs_binutils
def test_inlined_helper_becomes_guilty_and_host_its_caller(vmlinux):
    offset, size, line = _planted_bug_site(vmlinux)
    log = read_console_case(DATA_DIR / "swapops_bug_6.12_printk_time.log").raw_log.decode()
    log = log.replace("swapops.h:486!", f"swapops.h:{line}!").replace(
        f"{HOST_FUNC}+0x1f4/0x200", f"{HOST_FUNC}+{offset:#x}/{size:#x}")
    (finding,) = analyze_text(log, vmlinux=str(vmlinux))
    assert finding.title == f"kernel BUG in {HELPER}"
    assert (finding.guilty_function, finding.caller) == (HELPER, HOST_FUNC)
    assert finding.cls == "swapops_bug"
    host_at = next(i for i, f in enumerate(finding.call_trace) if not f.inlined)
    inline_chain, host = finding.call_trace[:host_at], finding.call_trace[host_at]
    assert any(f.func == HELPER and f.source == f"include/linux/swapops.h:{line}" for f in inline_chain)
    assert host.func == HOST_FUNC and host.source.startswith("mm/")


def test_scan_command_rejects_missing_vmlinux(tmp_path, capsys):
    from harness.console import scan_command
    log = tmp_path / "c.log"
    log.write_bytes(read_console_case(DATA_DIR / "swapops_bug_6.12_printk_time.log").raw_log)
    assert scan_command([str(log)], as_json=False, vmlinux=str(tmp_path / "nope")) == 2
    assert "vmlinux not found" in capsys.readouterr().err


def test_missing_binutils_is_could_not_test_and_scan_names_it(tmp_path, monkeypatch, capsys):
    from harness.console import scan_command
    log = tmp_path / "c.log"
    log.write_bytes(read_console_case(DATA_DIR / "swapops_bug_6.12_printk_time.log").raw_log)
    vmlinux = tmp_path / "vmlinux"
    vmlinux.write_bytes(b"")
    monkeypatch.setenv("PATH", str(tmp_path))      # no nm (nor grep: the Python prefilter reads the log)
    assert issubclass(SymbolizeError, CouldNotTest)
    assert scan_command([str(log)], as_json=False, vmlinux=str(vmlinux)) == 2
    assert f"{vmlinux}: nm (binutils) not found" in capsys.readouterr().err
