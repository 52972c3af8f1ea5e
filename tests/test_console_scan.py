"""scan_command's contract (exit codes, error lines, JSON) and the streaming reader."""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from test_console_data import DATA_DIR, read_console_case

from harness.console import analyze_file, analyze_text, prefilter, scan_command, scanner
from harness.console.prefilter import PREFILTER_ENV

SWAPOPS = read_console_case(DATA_DIR / "swapops_bug_6.12_printk_time.log").raw_log
OOM = read_console_case(DATA_DIR / "oom_only.log").raw_log
CLEAN = read_console_case(DATA_DIR / "clean_boot.log").raw_log


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_findings_exit_1_and_json_lists_them(tmp_path, capsys):
    assert scan_command([_write(tmp_path, "a.log", SWAPOPS)], as_json=True, vmlinux=None) == 1
    out = json.loads(capsys.readouterr().out)
    assert [f["cls"] for f in out] == ["swapops_bug"]
    assert out[0]["title"] == "kernel BUG in migration_entry_wait_on_locked"
    assert out[0]["aftermath"] == ["kernel panic: Fatal exception"]


def test_clean_log_exits_0(tmp_path, capsys):
    assert scan_command([_write(tmp_path, "clean.log", CLEAN)], as_json=False, vmlinux=None) == 0
    assert "no findings" in capsys.readouterr().out


def test_oom_only_is_informational_exit_0(tmp_path, capsys):
    assert scan_command([_write(tmp_path, "oom.log", OOM)], as_json=False, vmlinux=None) == 0
    assert "informational" in capsys.readouterr().out


@pytest.mark.parametrize("make, problem", [
    (lambda d: _write(d, "empty.log", b""), "file is empty"),
    (lambda d: str(d), "is a directory"),
    (lambda d: str(d / "missing.log"), "no such file"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make, problem):
    path = make(tmp_path)
    assert scan_command([path], as_json=False, vmlinux=None) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"kstress scan: error: {path}: {problem}")


@pytest.mark.parametrize("dir_mode", [0o755, 0o700], ids=["file-mode-0", "dir-not-searchable"])
def test_unreadable_file_exit_2(dir_mode):
    """Root reads files whatever their mode, so as root the scan runs in a
    child that has dropped to the unprivileged user 'nobody'."""
    parent = Path(tempfile.mkdtemp(prefix="kstress-unreadable-"))  # pytest's tmp is private
    os.chmod(parent, dir_mode)
    path = _write(parent, "secret.log", SWAPOPS)
    os.chmod(path, 0)
    try:
        _scan_as_nobody(path)
    finally:
        shutil.rmtree(parent)


def _scan_as_nobody(path):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            sys.stderr = os.fdopen(write_end, "w")
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            code = scan_command([path], as_json=False, vmlinux=None)
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2, err
    assert err.count("\n") == 1 and "permission denied" in err.lower()


def _multi_boot_log():
    noise = b"".join(b"[   %d.000000] ordinary line %d about nothing\n" % (i, i) for i in range(300))
    banner = b"[    0.000000] Linux version 6.12.57 (kstress@build) #1 SMP\n"
    return (banner + noise + SWAPOPS + noise + banner + noise
            + read_console_case(DATA_DIR / "gpf_interleaved_two_cpus.log").raw_log
            + noise + banner + OOM + noise)


@pytest.mark.parametrize("prefilter", ["grep", "python"])
def test_reports_across_chunk_and_window_boundaries_are_found_once(tmp_path, monkeypatch, prefilter):
    # Tiny chunks and windows force reports, anchors and preludes to straddle reads.
    log = _multi_boot_log()
    path = _write(tmp_path, "big.log", log)
    expected = analyze_text(log.decode())
    if prefilter == "python":
        monkeypatch.setenv(PREFILTER_ENV, "python")
    monkeypatch.setattr(scanner, "CHUNK_BYTES", 997)
    monkeypatch.setattr(scanner, "MARGIN_BYTES", 6000)
    monkeypatch.setattr(scanner, "BACK_BYTES", 2000)
    monkeypatch.setattr(scanner, "REPORT_BYTES", 6000)
    monkeypatch.setattr(scanner, "WINDOW_BYTES", 9000)
    found = analyze_file(path)
    assert [(f.title, f.start, f.end) for f in found] == [(f.title, f.start, f.end) for f in expected]
    assert [f.boot for f in found] == [0, 1, 2]
    for finding in found:
        assert log[finding.start:finding.end].decode() == finding.excerpt


def test_grep_and_python_prefilters_agree_on_every_data_log(tmp_path, monkeypatch):
    logs = [_write(tmp_path, p.name, read_console_case(p).raw_log) for p in sorted(DATA_DIR.glob("*.log"))]
    with_grep = [[f.to_dict() for f in analyze_file(p)] for p in logs]
    monkeypatch.setenv(PREFILTER_ENV, "python")
    assert with_grep == [[f.to_dict() for f in analyze_file(p)] for p in logs]


def test_grep_rows_split_across_reads_and_overlong_lines_give_the_same_findings(tmp_path, monkeypatch):
    # grep's rows arrive in 7-byte reads (rows straddle them); rows over 64 bytes
    # are not held (the scanner reads those lines from the file): an overlong
    # chatter line holding anchors, an overlong panic line, every data log.
    long_chatter = b"[   3.000000] user said WARNING: " + b"BUG: " * 40 + b"\n"
    long_panic = b"[   4.000000] Kernel panic - not syncing: " + b"x" * 200 + b"\n"
    logs = [_multi_boot_log(), long_chatter * 3 + SWAPOPS, long_chatter + long_panic + long_chatter]
    logs += [read_console_case(p).raw_log for p in sorted(DATA_DIR.glob("*.log"))]
    paths = [_write(tmp_path, f"{i}.log", log) for i, log in enumerate(logs)]
    monkeypatch.setenv(PREFILTER_ENV, "python")
    expected = [[f.to_dict() for f in analyze_file(p)] for p in paths]
    monkeypatch.delenv(PREFILTER_ENV)
    monkeypatch.setattr(prefilter, "_READ_BYTES", 7)
    monkeypatch.setattr(prefilter, "MAX_ROW_BYTES", 64)
    assert [[f.to_dict() for f in analyze_file(p)] for p in paths] == expected
    assert [f.title for f in analyze_file(paths[2])] == ["kernel panic: " + "x" * 200]


def test_second_boot_without_crash_or_shutdown_is_unexpected_reboot():
    boot = "[    0.000000] Linux version 6.12.57 (kstress@build) #1 SMP\n[    5.0] Run /sbin/init as init process\n"
    findings = analyze_text(boot + boot)
    assert [(f.cls, f.title) for f in findings] == [("reboot", "unexpected kernel reboot")]
    assert analyze_text(boot + "[   9.0] reboot: Restarting system\n" + boot) == []


def test_warning_before_oops_is_its_own_finding_and_oops_aftermath_folds():
    text = read_console_case(DATA_DIR / "warning_then_bug_journald_crlf.log").raw_log.decode()
    findings = analyze_text(text)
    assert [f.cls for f in findings] == ["warning", "page_fault"]
    assert findings[0].aftermath == []
    assert findings[1].kernel_version == "6.1.112" and findings[1].taint == "G W"


def test_interleaved_task_frames_are_left_out_of_the_trace():
    text = read_console_case(DATA_DIR / "gpf_interleaved_two_cpus.log").raw_log.decode()
    (finding,) = analyze_text(text)
    funcs = [frame.func for frame in finding.call_trace]
    assert "sched_show_task" not in funcs and "rmap_walk_anon" in funcs
    assert finding.pid == 2201 and finding.comm == "migrate_fork"


def test_signature_ignores_timestamps_addresses_and_offsets():
    text = SWAPOPS.decode()
    shifted = text.replace("[   12.", "[  812.").replace("+0x1f4/0x200", "+0x1e0/0x200").replace(":486!", ":491!")
    assert analyze_text(text)[0].signature == analyze_text(shifted)[0].signature


@pytest.mark.parametrize("name, dump_start", [
    ("split_huge_page_vm_bug_on_folio_6.12.log", "page: refcount:"),
    ("vm_bug_on_vma_split_huge_pmd_6.1.log", "vma ffff"),
])
def test_vm_bug_on_dump_printed_before_the_bug_line_is_in_the_excerpt(name, dump_start):
    (finding,) = analyze_text(read_console_case(DATA_DIR / name).raw_log.decode())
    assert dump_start in finding.excerpt.splitlines()[0]
    assert finding.excerpt.rstrip().endswith("---[ end trace 0000000000000000 ]---")
