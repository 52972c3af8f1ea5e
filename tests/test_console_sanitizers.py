"""What the KASAN and lockdep kernel variants print, recognised and titled:
the syzkaller corpus's real KASAN and lockdep reports (every one found, of the
right class, titles ratcheted), a few of them pinned by title, and the
consoles of our own 6.12 KASAN and lockdep kernels (tests/data/console-captured/)."""

from __future__ import annotations

import pytest
from test_console_corpus import CORPUS, read_case, read_dir

from harness.console import analyze_text

# Ratchet (hit counts, like test_console_corpus): raise when titles improve.
# family -> (first report of one of the family's classes, same title as syzkaller's).
# lockdep: 2 of 73 first reports are the oops that follows a "nested lock was
# not taken" warning; the title misses name another function than syzkaller's
# per-subsystem heuristics (e.g. a HARDIRQ-safe lock's first acquisition site).
RATCHET = {"kasan": (67, 60), "lockdep": (71, 55)}
# What PROVE_LOCKING and DEBUG_ATOMIC_SLEEP print: lockdep's own reports,
# sleeping in atomic context, DEBUG_SPINLOCK's BUGs, lockdep.c's WARNINGs.
CLASSES = {"kasan": {"kasan"}, "lockdep": {"lockdep", "atomic_sleep", "bug", "warning"}}

pytestmark = pytest.mark.skipif(not (CORPUS / "report").is_dir(), reason=f"syzkaller corpus not found at {CORPUS}")


def _family(case) -> str | None:
    if case.headers.get("CORRUPTED") or not case.title:
        return None
    if case.title.startswith("KASAN: "):
        return "kasan"
    return "lockdep" if case.headers.get("TYPE") == "LOCKDEP" else None


def test_every_kasan_and_lockdep_report_is_found_as_such():
    found = {k: 0 for k in RATCHET}
    titled = {k: 0 for k in RATCHET}
    total = {k: 0 for k in RATCHET}
    for case in read_dir(CORPUS / "report"):
        family = _family(case)
        if family is None:
            continue
        total[family] += 1
        reports = [f for f in analyze_text(case.log) if not f.informational]
        assert reports, case.path.name  # every one is found as some report
        first = reports[0]
        found[family] += first.cls in CLASSES[family]
        titled[family] += first.title == case.title or first.title in case.alts
    print({k: (found[k], titled[k], total[k]) for k in RATCHET})
    assert total == {"kasan": 67, "lockdep": 73}
    for family, (min_found, min_titled) in RATCHET.items():
        assert found[family] >= min_found and titled[family] >= min_titled, family


@pytest.mark.parametrize("name, title, cls", [
    ("704", None, "kasan"),  # slab-use-after-free: the 6.x spelling of a slab object's use-after-free
    ("737", "KASAN: slab-use-after-free Read in mptcp_pm_del_add_timer", "kasan"),
    ("165", "KASAN: use-after-free Read in shmem_disband_hugehead", "kasan"),
    ("5", "KASAN: invalid-free in selinux_tun_dev_free_security", "kasan"),
    ("105", "KASAN: slab-out-of-bounds Read in ip6_fragment", "kasan"),
    ("666", "inconsistent lock state in io_dismantle_req", "lockdep"),
    ("546", "WARNING: locking bug in deactivate_slab", "lockdep"),
    ("532", "WARNING: still has locks held in count_memcg_event_mm", "lockdep"),
])
def test_pinned_corpus_reports(name, title, cls):
    case = read_case(CORPUS / "report" / name)
    first = [f for f in analyze_text(case.log) if not f.informational][0]
    assert first.cls == cls
    if title:
        assert first.title == title == case.title


def test_circular_and_recursive_locking_reports_are_titled_after_the_acquisition():
    """Every corpus report whose header is lockdep's "possible circular locking
    dependency" or "possible recursive locking" is one finding of class lockdep
    titled "possible deadlock in <func>", func being one that lockdep names."""
    seen = 0
    for case in read_dir(CORPUS / "report"):
        if case.headers.get("CORRUPTED") or case.headers.get("TYPE") != "LOCKDEP":
            continue
        if not any(h in case.log for h in ("possible circular locking dependency detected",
                                           "possible recursive locking detected")):
            continue
        first = [f for f in analyze_text(case.log) if not f.informational][0]
        assert first.cls == "lockdep" and first.title.startswith("possible deadlock in "), case.path.name
        func = first.title.removeprefix("possible deadlock in ")
        assert func in case.log, case.path.name
        seen += 1
    assert seen == 17
