"""Each report rule carries its own prefilter anchors; these tests keep them true.

A rule's anchors are substrings one of which every line it matches contains:
the prefilter (grep -F) looks only for them, so a line a rule matches without
one is never seen.  Checked on every distinct line of the consoles at hand
(tests/data and syzkaller's corpus), with the rule's pattern alone: a line that
an earlier rule takes in match_rule is still one the rule must not miss.
"""

import re
from pathlib import Path

import pytest
from test_console_corpus import CORPUS, read_dir
from test_console_data import CASES

from harness.console import prefilter
from harness.console.lines import clean
from harness.console.rules import (
    BOOT_BANNER,
    BOOT_BANNER_ANCHORS,
    CLEAN_SHUTDOWN,
    CLEAN_SHUTDOWN_ANCHORS,
    KERNEL_BANNER,
    RULES,
    Rule,
)

CAPTURED_DIR = Path(__file__).resolve().parent / "data" / "console-captured"

# Forms no console here shows, so that every rule (and marker form) has a sample.
EXTRA_SAMPLES = [
    "Kernel BUG at c04a1b2c [verbose debug info unavailable]",     # x86-32, no kallsyms
    "Watchdog detected hard LOCKUP on cpu 1",
    "WARNING: CPU: 0 PID: 1 at do_one_initcall+0x6c/0x2a0",         # __warn() without a file
    "Power down.",                                                  # kernel_power_off() before 3.15
    "Restarting system.",
]

MATCHERS = [(rule.name, rule.pattern, rule.anchors) for rule in RULES] + [
    ("BOOT_BANNER", BOOT_BANNER, BOOT_BANNER_ANCHORS),
    ("KERNEL_BANNER", KERNEL_BANNER, BOOT_BANNER_ANCHORS),
    ("CLEAN_SHUTDOWN", CLEAN_SHUTDOWN, CLEAN_SHUTDOWN_ANCHORS),
]


@pytest.fixture(scope="module")
def console_lines():
    """Every distinct console line here, cleaned as the scanner cleans it."""
    logs = [case.raw_log.decode("utf-8", "replace") for case in CASES]
    logs += [path.read_bytes().decode("utf-8", "replace") for path in sorted(CAPTURED_DIR.glob("*.log"))]
    logs += [case.log for sub in ("report", "guilty") for case in read_dir(CORPUS / sub)]
    return sorted({clean(raw)[0] for log in logs for raw in log.split("\n")} | set(EXTRA_SAMPLES))


@pytest.mark.skipif(not (CORPUS / "report").is_dir(), reason=f"syzkaller corpus not found at {CORPUS}")
@pytest.mark.parametrize("name, pattern, anchors", MATCHERS, ids=[name for name, _, _ in MATCHERS])
def test_every_line_a_rule_matches_holds_one_of_its_anchors(console_lines, name, pattern, anchors):
    matched = [line for line in console_lines if pattern.search(line)]
    assert matched, f"no console line here matches {name}: add a real one to EXTRA_SAMPLES"
    missed = [line for line in matched if not any(anchor in line for anchor in anchors)]
    assert not missed, f"{name} matches lines holding none of its anchors {anchors}: {missed[:5]}"


def test_prefilter_searches_the_anchors_of_every_rule_and_marker_once():
    wanted = {anchor for rule in RULES for anchor in rule.anchors} | set(BOOT_BANNER_ANCHORS + CLEAN_SHUTDOWN_ANCHORS)
    assert sorted(prefilter.ANCHORS) == sorted(wanted)


@pytest.mark.parametrize("anchors", [(), ("",), ("BUG", ""), "BUG"], ids=["none", "empty", "one-empty", "bare-str"])
def test_a_rule_without_anchors_is_an_error(anchors):
    with pytest.raises(ValueError, match="anchors"):
        Rule("unanchored", re.compile("BUG: "), anchors, "bug", "BUG", "BUG")


def test_rules_are_named_once_and_absorb_notes_of_rules_that_exist():
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    assert {note for rule in RULES for note, _ in rule.absorbs_notes} <= set(names)
