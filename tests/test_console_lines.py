"""Transport prefixes in front of kernel text, in every form a console log carries them."""

import pytest

from harness.console.frames import base_name, parse_frame, parse_rip
from harness.console.lines import clean

KERNEL_TEXT = "kernel BUG at include/linux/swapops.h:486!"


@pytest.mark.parametrize("raw, ctx", [
    (KERNEL_TEXT, None),
    ("[   12.345678] " + KERNEL_TEXT, None),
    ("[   12.345678][  T123] " + KERNEL_TEXT, "T123"),
    ("[   12.345678] [    C1] " + KERNEL_TEXT, "C1"),
    ("<4>[   12.345678] " + KERNEL_TEXT, None),
    ("Nov 26 21:02:40 vm kernel: " + KERNEL_TEXT, None),
    ("Nov 26 21:02:40.123456 vm kernel: [   12.345678] " + KERNEL_TEXT, None),
    ("2026-11-26T21:02:40+0000 vm kernel: " + KERNEL_TEXT, None),
    ("Dec  4 15:56:11 syzkaller kern.warn kernel: [   62.262385][ T6753] " + KERNEL_TEXT, "T6753"),
    ("[Thu Nov 26 21:02:40 2026] " + KERNEL_TEXT, None),
    ("\x1b[0;1;31m[   12.345678] " + KERNEL_TEXT + "\x1b[0m\r", None),
    ("\x00\x00[   12.345678] " + KERNEL_TEXT, None),
])
def test_prefixes_are_stripped(raw, ctx):
    assert clean(raw) == (KERNEL_TEXT, ctx)


@pytest.mark.parametrize("line, func, unreliable, source", [
    (" ? die+0x36/0x90", "die", True, None),
    (" __migration_entry_wait+0x4b/0x60", "__migration_entry_wait", False, None),
    (" [<ffffffff81153089>] copy_page_range+0x189/0x300", "copy_page_range", False, None),
    (" [<ffffffff8100b0d2>] ? system_call_fastpath+0x16/0x1b", "system_call_fastpath", True, None),
    (" do_swap_page+0x6f1/0xe80 mm/memory.c:4321", "do_swap_page", False, "mm/memory.c:4321"),
    (" pfn_swap_entry_folio include/linux/swapops.h:486 [inline]", "pfn_swap_entry_folio", False,
     "include/linux/swapops.h:486"),
    (" nvme_poll+0x10/0x20 [nvme]", "nvme_poll", False, None),
    ("[c000000049a87a10] [c0000000005f7dc8] exit_aio+0x188/0x2a0", "exit_aio", False, None),
    ("[<8016fb5c>] (prepare_to_wait_event+0x68/0x104) from [<803b18e8>] (nfs_get_client+0x2b0/0x488)",
     "prepare_to_wait_event", False, None),
])
def test_frames_of_every_era_parse(line, func, unreliable, source):
    frame = parse_frame(line)
    assert (frame.func, frame.unreliable, frame.source) == (func, unreliable, source)


@pytest.mark.parametrize("line, func", [
    ("RIP: 0010:migration_entry_wait_on_locked+0x1f4/0x200", "migration_entry_wait_on_locked"),
    ("RIP: 0010:[<ffffffff81152e9f>]  [<ffffffff81152e9f>] copy_pte_range+0x5bf/0x620", "copy_pte_range"),
    ("pc : __split_huge_page+0x8a1/0x8b0", "__split_huge_page"),
    ("PC is at __sanitizer_cov_trace_pc+0x4c/0x78", "__sanitizer_cov_trace_pc"),
])
def test_faulting_instruction_of_every_arch(line, func):
    assert parse_rip(line).func == func


def test_compiler_clone_suffixes_are_one_function():
    assert base_name("do_ip_setsockopt.isra.12") == base_name("do_ip_setsockopt.constprop.0.cold")
