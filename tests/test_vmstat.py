from harness.stress.vmstat import deltas, missing_evidence, parse_vmstat

BEFORE = "nr_free_pages 1000\npgmigrate_success 10\ncompact_stall 0\nthp_fault_alloc 3\npgfault 100\n"
AFTER = ("nr_free_pages 900\npgmigrate_success 510\n[   12.345678] a printk line\n"
         "compact_stall 4\nthp_fault_alloc 3\npgfault 900\nnew_counter 5\n")


def test_parse_ignores_non_counter_lines():
    c = parse_vmstat(AFTER)
    assert c["pgmigrate_success"] == 510 and "[" not in "".join(c)


def test_deltas_keep_evidence_families_only():
    d = deltas(parse_vmstat(BEFORE), parse_vmstat(AFTER))
    assert d == {"compact_stall": 4, "pgfault": 800, "pgmigrate_success": 500, "thp_fault_alloc": 0}


def test_missing_evidence_with_alternatives():
    d = {"pgmigrate_success": 5, "compact_stall": 0, "compact_migrate_scanned": 9, "thp_fault_alloc": 0}
    assert missing_evidence(d, ["pgmigrate_success", "compact_stall|compact_migrate_scanned"]) == []
    assert missing_evidence(d, ["thp_fault_alloc", "compact_stall"]) == ["thp_fault_alloc", "compact_stall"]

