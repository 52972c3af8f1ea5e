"""The kstress command's faces that need no guest: scan and exit codes."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CAPTURED = REPO / "tests" / "data" / "console-captured"


def kstress(*args):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True)


@pytest.mark.parametrize("make_bad,needle", [
    (lambda d: d / "absent.log", "absent.log"),
    (lambda d: d, "directory"),
    (lambda d: (d / "empty.log").write_text("") or d / "empty.log", "empty"),
])
def test_scan_bad_input_exits_2_with_one_line(tmp_path, make_bad, needle):
    res = kstress("scan", str(make_bad(tmp_path)))
    assert res.returncode == 2
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_scan_finds_the_swapops_bug_and_exits_1():
    res = kstress("scan", str(CAPTURED / "swapops-6.12-fork-1.log"))
    assert res.returncode == 1
    assert "[swapops_bug] kernel BUG in pfn_swap_entry_folio" in res.stdout


def test_scan_json_of_a_clean_console_is_empty_and_exits_0():
    res = kstress("scan", "--json", str(CAPTURED / "clean-6.12-migrate_fork-1.log"))
    assert res.returncode == 0 and res.stdout.strip() == "[]"


def test_no_subcommand_is_a_usage_error():
    res = kstress()
    assert res.returncode == 2 and "usage:" in res.stderr
