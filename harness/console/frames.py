"""Stack frames: parsing trace lines and choosing the guilty frame and file."""

import os
import re
from functools import lru_cache
from typing import Iterable, List, Optional

from .model import Frame

_FUNC = r"[A-Za-z_$][\w.$]*"
# " ? func+0x1f/0x40 [mod] mm/x.c:12", "[<ffffffff8110>] ? func+0x1f/0x40",
# "func+0x1f/0x40 (T)" (arm64), all with optional leading address.
_FRAME = re.compile(
    r"^\s*(?:\[<(?P<addr>[0-9a-fA-F]{8,16})>\]\s*)?(?:\[\s*[0-9a-fA-F]{8,16}\]\s*){0,2}"
    r"(?P<q>\?\s+)?(?P<func>" + _FUNC + r")\+(?P<off>0x[0-9a-fA-F]+)/(?P<size>0x[0-9a-fA-F]+)"
    r"(?:\s+\[(?P<mod>[\w-]+)\])?(?:\s+(?P<src>[\w./+-]+:\d+)(?::\d+)?)?")
# 32-bit ARM: "[<8016fb5c>] (prepare_to_wait_event+0x68/0x104) from [<803b18e8>] (...)"
_ARM_FRAME = re.compile(r"^\s*\[<(?P<addr>[0-9a-f]{8,16})>\] \((?P<func>" + _FUNC + r")"
                        r"(?:\+(?P<off>0x[0-9a-f]+)/(?P<size>0x[0-9a-f]+))?\) from ")
# Symbolized inline frame: " neigh_output include/net/neighbour.h:477 [inline]"
_INLINE = re.compile(r"^\s*(?P<func>" + _FUNC + r")\s+(?P<src>[\w./+-]+\.\w+:\d+)(?::\d+)?\s+\[inline\]")
# Register lines naming the faulting instruction, in every era and arch.
_RIP = re.compile(
    r"(?:^|\s)(?:RIP|EIP|pc|PC is at|NIP|IP)\s*:?\s*(?:\[?<?[0-9a-f]{4}>?:)?\s*"
    r"(?:\[<[0-9a-fA-F]+>\]\s*)*(?:\[<[0-9a-fA-F]+>\]\s*)?"
    r"(?P<func>" + _FUNC + r")\+(?P<off>0x[0-9a-fA-F]+)/(?P<size>0x[0-9a-fA-F]+)"
    r"(?:\s+\[(?P<mod>[\w-]+)\])?(?:\s+(?P<src>[\w./+-]+:\d+))?")
_EIP_IS_AT = re.compile(r"^(?:EIP|RIP|PC) is at (?P<func>" + _FUNC + r")\+(?P<off>0x[0-9a-f]+)/(?P<size>0x[0-9a-f]+)")

# Compiler clones: func.isra.0, func.constprop.3, func.part.1, func.cold
_CLONE_SUFFIX = re.compile(r"(?:\.(?:isra|constprop|part|cold|lto_priv|llvm|localalias)(?:\.\d+)*)+$|\.\d+$")


def parse_frame(text: str) -> Optional[Frame]:
    match = _FRAME.match(text)
    if match:
        return Frame(func=match.group("func"), offset=match.group("off"), size=match.group("size"),
                     address=match.group("addr"), source=match.group("src"), module=match.group("mod"),
                     unreliable=bool(match.group("q")))
    match = _INLINE.match(text)
    if match:
        return Frame(func=match.group("func"), source=match.group("src"), inlined=True)
    match = _ARM_FRAME.match(text)
    if match:
        return Frame(func=match.group("func"), offset=match.group("off"), size=match.group("size"),
                     address=match.group("addr"))
    return None


def parse_rip(text: str) -> Optional[Frame]:
    match = _RIP.search(text) or _EIP_IS_AT.match(text)
    if not match:
        return None
    groups = match.groupdict()
    return Frame(func=match.group("func"), offset=match.group("off"), size=match.group("size"),
                 module=groups.get("mod"), source=groups.get("src"))


def base_name(func: str) -> str:
    """func.isra.0 -> func (compiler clones are the same function)."""
    return _CLONE_SUFFIX.sub("", func)


# Frames that report, trap, lock, allocate or schedule: never the culprit.
_HELPERS = re.compile(r"^(?:" + "|".join([
    # printing and reporting the crash itself
    r"dump_stack\w*", r"__dump_stack", r"show_stack", r"show_regs", r"__show_regs", r"show_trace\w*",
    r"print_\w+", r"printk\w*", r"_printk", r"vprintk\w*", r"panic", r"nmi_panic", r"__warn\w*",
    r"warn_slowpath\w*", r"warn_\w+", r"report_bug", r"handle_bug", r"fixup_bug", r"__report_bug",
    r"dump_page", r"__dump_page", r"free_page_is_bad\w*", r"free_pcp_prepare", r"free_pages_prepare",
    r"__free_pages\w*", r"free_unref_folios", r"__folio_put\w*", r"folio_put\w*", r"put_page", r"__put_page",
    r"dump_\w+_page", r"bad_page", r"bad_range", r"dump_vma", r"dump_mm",
    r"__\w+_report", r"report_\w+", r"__report_\w+", r"end_report", r"start_report",
    # traps and fault handling
    r"do_trap\w*", r"do_error_trap", r"do_invalid_op", r"exc_\w+", r"asm_exc_\w+", r"invalid_op",
    r"die", r"__die\w*", r"oops_\w+", r"do_general_protection", r"general_protection", r"page_fault",
    r"\w*do_page_fault", r"do_user_addr_fault", r"do_kern_addr_fault", r"no_context", r"\w*bad_area\w*",
    r"kernelmode_fixup_or_oops", r"page_fault_oops", r"spurious_kernel_fault", r"fixup_exception",
    r"do_int3\w*", r"do_debug", r"math_error", r"do_divide_error", r"el1_\w+", r"el0_\w+", r"do_mem_abort",
    r"__do_kernel_fault", r"die_kernel_fault", r"do_translation_fault", r"do_bad_area", r"bug_handler",
    r"call_break_hook", r"brk_handler", r"do_debug_exception", r"arm64_\w+_handler",
    # sanitizers
    r"_*kasan_\w+", r"check_memory_region\w*", r"__asan_\w+", r"asan_\w+", r"_*msan_\w+", r"kmsan_\w+",
    r"_*kcsan_\w+", r"__tsan_\w+", r"_*kfence_\w+", r"_*ubsan_\w+", r"__sanitizer_\w+", r"write_comp_data",
    r"check_\w+_object", r"__check_\w+", r"usercopy_\w+", r"__check_object_size", r"check_heap_object",
    r"fortify_\w+", r"__fortify_\w+",
    # debug checkers
    r"_*lockdep_\w+", r"_*lock_acquire\w*", r"lock_release", r"lock_acquired", r"lock_contended",
    r"mark_lock\w*", r"validate_chain", r"check_prev_add", r"check_prevs_add", r"check_noncircular",
    r"check_deadlock", r"check_irq_usage", r"debug_check_no_\w+", r"debug_lockdep_\w+",
    r"__list_add_valid\w*", r"__list_del_entry_valid\w*", r"__list_\w+_report", r"list_\w+_valid\w*",
    r"refcount_\w+", r"__refcount_\w+", r"_*debug_object\w*", r"debug_print_object", r"__debug_check\w*",
    r"__might_sleep", r"___might_sleep", r"__might_resched", r"__might_fault", r"might_fault",
    r"__cant_sleep", r"__cant_migrate", r"check_preemption_disabled", r"debug_smp_processor_id",
    r"__this_cpu_preempt_check", r"rcu_lockdep_current_cpu_online", r"lockdep_rcu_suspicious",
    # locks, waiting and scheduling (a task stuck in mutex_lock is guilty of the lock's caller)
    r"_raw_\w+", r"__raw_\w+", r"do_raw_\w+", r"queued_\w+", r"native_queued_\w+", r"__pv_queued_\w+",
    r"pv_\w+", r"(?:spin|read|write)_(?:un)?lock\w*", r"__mutex_\w+", r"mutex_\w+", r"down_\w+", r"down",
    r"up_\w+", r"up", r"rwsem_\w+", r"__rwsem_\w+", r"__down\w*", r"__up\w*", r"rt_mutex\w*",
    r"__rt_mutex\w*", r"percpu_down_\w+", r"__percpu_down_\w+", r"_*pte_offset_map\w*", r"p[mu]d_lock",
    r"__schedule", r"schedule\w*", r"io_schedule\w*", r"preempt_schedule\w*", r"__switch_to\w*",
    r"context_switch", r"finish_task_switch\w*", r"__cond_resched", r"_cond_resched", r"cond_resched\w*",
    r"wait_for_completion\w*", r"__wait_for_common", r"wait_for_common\w*", r"do_wait_for_common",
    r"__wait_on_bit\w*", r"out_of_line_wait_on_bit\w*", r"bit_wait\w*", r"__wait_event\w*",
    r"prepare_to_wait\w*", r"finish_wait", r"usleep_range\w*", r"msleep\w*", r"schedule_hrtimeout\w*",
    r"ldsem_\w+", r"kthread_stop\w*", r"wait_on_page\w*", r"__wait_on_buffer", r"wait_on_buffer",
    r"__lock_page(?:_killable)?", r"lock_page(?:_killable)?", r"folio_wait_\w+", r"__folio_lock(?:_killable)?",
    r"folio_lock(?:_killable)?",
    r"call_rwsem_\w+", r"console_lock", r"__console_lock", r"wait_woken", r"__wait_on_freeing_inode",
    r"__synchronize_srcu", r"__wait_rcu_gp", r"wait_rcu_gp", r"_*cancel_\w*work\w*", r"cancel_delayed_work\w*",
    r"flush_work", r"__flush_work\w*", r"flush_workqueue", r"__flush_workqueue", r"rcu_barrier\w*",
    # interrupts, timers, watchdogs (context for stalls, not their cause)
    r"rcu_\w+", r"__rcu_\w+", r"nmi_\w+", r"arch_trigger_\w+", r"trigger_\w+_backtrace\w*",
    r"watchdog\w*", r"__do_softirq", r"do_softirq\w*", r"__irq_exit\w*", r"irq_exit\w*", r"sysvec_\w+",
    r"asm_sysvec_\w+", r"\w*apic_timer_interrupt\w*", r"hrtimer_\w+", r"__hrtimer_\w+", r"tick_\w+",
    r"update_process_times", r"__sysvec_\w+", r"irq_\w+_entry\w*", r"common_interrupt", r"asm_common_interrupt",
    r"handle_irq\w*", r"__handle_irq\w*", r"__irq_\w+", r"call_timer_fn",
    r"expire_timers", r"invoke_softirq", r"handle_softirqs", r"ret_from_intr",
    r"csd_lock_wait", r"smp_call_function_many_cond",
    # allocator and memory primitives (the caller misused them)
    r"kfree\w*", r"kvfree\w*", r"kmem_cache_free\w*", r"__kmem_cache_free\w*", r"slab_free\w*",
    r"__slab_free", r"do_slab_free", r"kmalloc\w*", r"__kmalloc\w*", r"kmem_cache_alloc\w*", r"slab_alloc\w*",
    r"___slab_alloc", r"__slab_alloc\w*", r"kzalloc\w*", r"kvmalloc\w*", r"__kvmalloc\w*", r"krealloc\w*",
    r"kmemdup\w*", r"_*kmemleak_\w+", r"_*create_object", r"sock_kmalloc", r"vfree", r"__vunmap", r"vunmap",
    r"spin_dump", r"spin_bug", r"__schedule_bug", r"register_lock_class", r"handle_overflow",
    r"work_is_static_object", r"__list_del_entry", r"__list_add", r"list_del", r"string\w*", r"vsnprintf",
    r"__x86_indirect_thunk_\w+", r"__x86_return_thunk", r"exiting_irq", r"perf_trace_\w+", r"__call_rcu\w*",
    r"call_rcu", r"proc_create\w*", r"proc_register", r"proc_mkdir\w*", r"kobject_\w+", r"strnstr", r"vmalloc\w*",
    r"__vmalloc\w*", r"vzalloc\w*", r"warn_alloc\w*", r"kmalloc_slab", r"kstrdup\w*", r"memcpy\w*", r"memset\w*",
    r"memmove\w*", r"__memcpy\w*", r"__memset\w*",
    r"__memmove\w*", r"memcmp", r"str(?:n?len|n?cpy|scpy|lcpy|n?cmp|r?chr|str|ncasecmp|casecmp)", r"copy_user\w*",
    r"_copy_\w+_user", r"copy_\w+_user",
    r"__copy_\w+_user\w*", r"rep_movs_alternative",
    # generic library code: data structures, atomics, bitops, formatting, device model
    r"_*rb_\w+", r"rb_erase\w*", r"klist_\w+", r"device_del", r"device_unregister", r"sysfs_\w+", r"kernfs_\w+",
    r"crc\w*", r"hex_\w+", r"\w*printf", r"dump_backtrace", r"skb_panic", r"skb_\w+_panic", r"__\w+_panic",
    r"assertfail", r"_*(?:arch_)?atomic\w*", r"_atomic_dec_and_lock\w*", r"test_and_\w+_bit",
    r"_*(?:set|clear|test|change)_bit\w*",
    r"read_word_at_a_time", r"__read_once\w*", r"osq_lock", r"osq_unlock", r"_*wake_up\w*", r"__queue_work",
    r"queue_work\w*", r"__queue_delayed_work", r"\w+_is_static_object", r"idr_\w+", r"ida_\w+", r"xa_\w+",
    r"__xa_\w+", r"radix_tree_\w+", r"__radix_tree_\w+",
    r"sg_(?:init_table|set_page|next|copy_\w+|miter_\w+|alloc_table\w*|free_table)", r"iov_iter_\w+", r"_copy_\w+_iter",
    r"copy_page_\w+_iter", r"memchr\w*", r"find_next_bit", r"find_first_bit", r"bitmap_\w+", r"__bitmap_\w+",
    r"llist_\w+", r"hlist_\w+", r"__hlist_\w+", r"kref_\w+", r"bug",
    # skb, usb, timer, device-model and tracing helpers called by the real culprit
    r"skb_(?:put|push|pull|under_panic|over_panic)", r"__alloc_pages\w*", r"alloc_pages\w*", r"do_tag_\w+",
    r"el1h_64_\w+", r"el1_abort", r"do_el1_\w+", r"device_add", r"device_destroy", r"device_remove_\w+",
    r"get_device_parent", r"devres_release\w*", r"dpm_sysfs_\w+", r"add_uevent_var", r"kobject_uevent\w*",
    r"usb_\w*urbs?", r"usb_start_wait_urb", r"del_timer\w*", r"__remove_hrtimer", r"init_timer_key",
    r"__init_timer\w*", r"lock_sock\w*", r"release_sock", r"reacquire_held_locks", r"complete\w*",
    r"trace_hardirqs_\w+", r"walk_stackframe", r"stack_trace_\w+", r"save_stack\w*", r"save_trace",
    r"arch_stack_walk", r"__virt_to_phys\w*", r"__seqprop_\w+", r"__local_bh_enable_ip", r"local_bh_enable\w*",
    r"format_decode", r"_*kmalloc_large\w*", r"sk_stop_timer\w*",
    r"sk_reset_timer", r"skb_free_head", r"sk_skb_reason_drop", r"kfree_skb\w*", r"__kfree_skb", r"consume_skb",
    r"folio_add_lru\w*", r"drop_nlink", r"inc_nlink", r"clear_nlink", r"set_nlink", r"dput", r"fast_dput",
    r"mark_buffer_dirty", r"__?cleanup_srcu_struct", r"aes_(?:en|de)crypt",
    r"\w+_(?:read|write)_(?:un)?lock(?:_nested)?", r"__kernfs_\w+", r"check_zeroed_user", r"__?timer_delete\w*",
    r"_stext", r"_etext", r"try_to_grab_pending", r"__?dev_printk\w*", r"put_device", r"queue_delayed_work_on",
    r"__?mod_timer\w*", r"__?try_to_del_timer_sync",
    r"ref_tracker_\w+", r"ksys_(?:read|write)", r"skb_release_data", r"page_frag_free", r"folio_batch_move_lru",
    r"call_rcu\w*", r"drain_workqueue", r"destroy_workqueue", r"__?task_rq_lock", r"rq_lock\w*",
    r"\w*alloc_skb\w*", r"alloc_inode", r"check_panic_on_warn", r"__alloc_frozen_pages\w*", r"alloc_page_interleave",
    r"memdup_user\w*", r"folio_unlock", r"unlock_page", r"__phys_addr\w*", r"rhashtable_\w+", r"__rhashtable_\w+",
    r"xas_\w+", r"lock_timer_base", r"insert_work", r"__hwasan_\w+", r"__kmem_cache_alloc\w*", r"rust_helper_BUG",
    r"kernel_fpu_begin\w*", r"simple_copy_to_iter", r"(?:__)?vfs_(?:read|write|readv|writev)\w*",
    r"new_sync_(?:read|write)", r"free_unref_page\w*", r"folios_put\w*", r"release_pages", r"__folio_batch_release",
    r"should_fail\w*", r"fail_dump", r"__should_fail\w*", r"retint_\w+", r"\w*fdatawait\w*", r"tty_ldisc_lock\w*",
    r"usb_control_msg", r"usb_bulk_msg",
    r"__?alloc_skb\w*", r"kv?asprintf\w*", r"pcpu_\w+", r"__alloc_percpu\w*", r"alloc_percpu\w*",
    r"__?list_lru_init\w*", r"\w+_start_kernel", r"va_format", r"dev_vprintk_emit", r"dev_printk\w*",
    r"kthread_should_\w+", r"__panic", r"quarantine_\w+", r"pointer", r"__stack_chk_fail",
    # entry code
    r"entry_SYSCALL\w*", r"entry_INT80\w*", r"do_syscall_\w+", r"do_fast_syscall_\w+", r"x64_sys_call",
    r"ia32_sys_call", r"invoke_syscall", r"el0_svc\w*", r"do_el0_svc\w*", r"ret_from_fork\w*", r"kthread",
    r"worker_thread", r"process_scheduled_works", r"smpboot_thread_fn",
    r"start_kernel", r"secondary_startup\w*", r"cpu_startup_entry", r"do_idle", r"default_idle\w*",
    r"native_safe_halt", r"arch_cpu_idle", r"cpuidle_\w+",
]) + r")$")

# Files that describe machinery, not the subsystem at fault (for guilty_file).
_HELPER_FILES = re.compile(r"^(?:\./)?(?:" + "|".join([
    r"include/", r"lib/", r"kernel/locking/", r"kernel/panic\.c", r"kernel/printk/", r"kernel/rcu/",
    r"kernel/sched/", r"kernel/time/", r"kernel/softirq\.c", r"kernel/irq/", r"kernel/kcov\.c",
    r"kernel/watchdog\w*\.c", r"kernel/hung_task\.c", r"kernel/workqueue\.c", r"kernel/kthread\.c",
    r"kernel/entry/", r"kernel/exit\.c", r"kernel/locking", r"kernel/trace/",
    r"arch/\w+/kernel/traps\.c", r"arch/\w+/kernel/dumpstack\w*\.c", r"arch/\w+/mm/fault\.c",
    r"arch/\w+/entry/", r"arch/\w+/kernel/entry", r"arch/\w+/lib/", r"arch/\w+/include/",
    r"mm/kasan/", r"mm/kmsan/", r"mm/kfence/", r"mm/kmemleak\.c", r"mm/slab\w*\.c", r"mm/slub\.c",
    r"mm/usercopy\.c", r"mm/debug\.c", r"mm/page_alloc\.c", r"mm/vmalloc\.c", r"mm/util\.c",
    r"kernel/kcsan/", r"fs/seq_file\.c", r"fs/read_write\.c", r"fs/ioctl\.c", r"fs/open\.c", r"fs/file\.c",
    r"fs/file_table\.c", r"drivers/usb/core/", r"mm/percpu\.c", r"mm/mempool\.c", r"mm/folio-compat\.c",
    r"arch/\w+/mm/physaddr\.c", r"net/core/skbuff\.c", r"net/core/dev\.c", r"arch/\w+/kernel/stacktrace\.c",
    r"arch/\w+/kernel/process\.c", r"arch/\w+/kernel/debug-monitors\.c", r"arch/\w+/kernel/apic/",
    r"arch/\w+/kernel/kvm\.c",
    r"kernel/ref_tracker\.c", r"lib/ref_tracker\.c", r"mm/fault-inject\.c", r"lib/fault-inject\.c", r"net/socket\.c",
    r"net/core/sock\.c", r"kernel/fork\.c", r"kernel/signal\.c",
    r"kernel/task_work\.c", r"kernel/sys\.c", r"drivers/base/", r"kernel/module\.c", r"virt/lib/", r"mm/slab\.h",
]) + r")")


@lru_cache(maxsize=4096)
def is_helper(func: str) -> bool:
    # Cached: the same few hundred functions recur in every report of a long console.
    return bool(_HELPERS.match(base_name(func)))


def is_helper_file(source: Optional[str]) -> bool:
    return bool(source) and bool(_HELPER_FILES.match(source.rsplit(":", 1)[0]))


def first_culprit(frames: Iterable[Frame]) -> Optional[Frame]:
    """The first reliable frame that is not reporting, locking or library machinery."""
    for frame in frames:
        if not frame.unreliable and not is_helper(frame.func) and not is_helper_file(frame.source):
            return frame
    return None


# Static inline helpers of include/linux/swapops.h (all eras) that compilers
# sometimes emit out of line, so that RIP names the helper, not its user.
_HEADER_HELPER = re.compile(r"^(?:pfn_swap_entry_\w+|migration_entry_to_\w+|swap_entry_migration_sync|"
                            r"is_\w+_migration_entry|make_\w+_migration_entry)$")


def is_header_helper(func: str) -> bool:
    return bool(_HEADER_HELPER.match(func))


def caller_of(frames: List[Frame], guilty: Frame) -> Optional[str]:
    """The first real (not inlined, not helper) function after ``guilty``.

    When no frame after it is reliable (the "guess" unwinder prints every
    frame as "? "), the nearest such "? " frame is the only evidence there
    is: it names the caller, never the guilty function.
    """
    after = []
    for index, frame in enumerate(frames):
        if frame is guilty:
            after = frames[index + 1:]
            break
    candidates = [f for f in after if not f.inlined and not is_helper(f.func)]
    reliable = [f for f in candidates if not f.unreliable]
    if reliable:
        return base_name(reliable[0].func)
    if candidates and not any(not f.unreliable for f in after):
        return base_name(candidates[0].func)
    return None


def guilty_file(frames: List[Frame], guilty_func: Optional[str] = None,
                fallback: Optional[str] = None) -> Optional[str]:
    """The first source file outside generic machinery, from the guilty frame on."""
    start = 0
    if guilty_func:
        start = next((i for i, f in enumerate(frames)
                      if not f.unreliable and base_name(f.func) == guilty_func), 0)
    for frame in frames[start:]:
        if frame.unreliable or not frame.source:
            continue
        path = os.path.normpath(frame.source.rsplit(":", 1)[0])
        if not _HELPER_FILES.match(path):
            return path
    if fallback and not _HELPER_FILES.match(fallback):
        return fallback
    return None


# Functions that call into a subsystem through a table or queue (syscall entry,
# file/socket ops, work items, timers, packet receive).  For a stall the frame
# they called is the useful one: that is where the CPU got stuck.
_DISPATCHERS = re.compile(r"^(?:" + "|".join([
    r"do_syscall_\w+", r"entry_SYSCALL\w*", r"entry_SYSENTER\w*", r"x64_sys_call", r"ia32_sys_call",
    r"do_fast_syscall_\w+", r"invoke_syscall", r"el0_svc_common", r"system_call_fastpath", r"sysenter_dispatch",
    r"vfs_ioctl", r"do_vfs_ioctl", r"do_loop_readv_writev", r"do_readv_writev", r"vfs_write", r"__vfs_write",
    r"new_sync_write", r"vfs_read", r"__vfs_read",
    r"new_sync_read", r"do_iter_readv_writev", r"do_iter_write", r"do_iter_read", r"vfs_writev", r"vfs_readv",
    r"sock_sendmsg\w*", r"sock_recvmsg\w*", r"__sock_sendmsg", r"____sys_sendmsg", r"sock_write_iter",
    r"sock_ioctl", r"__fput", r"____fput", r"task_work_run", r"call_timer_fn", r"process_one_work",
    r"__netif_receive_skb\w*", r"netif_receive_skb\w*", r"rtnetlink_rcv_msg", r"genl_rcv_msg",
    r"genl_family_rcv_msg\w*", r"__do_fault", r"do_dentry_open", r"flush_smp_call_function_queue",
    r"generic_smp_call_function_single_interrupt", r"tasklet_action_common", r"tasklet_action",
    r"rcu_do_batch", r"deliver_skb", r"vfs_fsync_range", r"blk_mq_dispatch_rq_list", r"\w+_rcv_msg",
    r"netlink_rcv_skb", r"(?:__(?:x64|ia32|se|do)_|compat_)?(?:sys|SyS)_ioctl", r"\w*compat_\w*ioctl",
    r"sock_common_[gs]etsockopt", r"__sys_[gs]etsockopt", r"ksys_(?:ioctl|read|write|pread64|pwrite64|readv|writev)",
    r"compat_sys_ioctl",
    r"__do_compat_sys_ioctl", r"proc_reg_\w+", r"full_proxy_\w+", r"seq_read\w*",
]) + r")$")
_SYSCALL_STUB = re.compile(r"^__(?:x64|ia32|arm64|x32|se|do)_(?:compat_)?sys_(?=\w)")
# The timer interrupt that found the CPU stuck: frames below it are the stuck code.
_TIMER_ENTRY = re.compile(r"^(?:asm_sysvec_apic_timer_interrupt|sysvec_apic_timer_interrupt|\w*apic_timer_interrupt\w*|"
                          r"el1h_64_irq|el1_interrupt|gic_handle_irq|"
                          r"asm_sysvec_call_function_single|__irq_svc|__irq_usr)$")


def is_dispatcher(func: str) -> bool:
    return bool(_DISPATCHERS.match(base_name(func)))


_CROSS_CPU_CALL = re.compile(r"^smp_call_function(?:_many|_many_cond|_single)?$|^on_each_cpu\w*$")


def stall_culprit(frames: List[Frame]) -> Optional[Frame]:
    """The frame a dispatcher called into, nearest the top; else the first culprit.

    A CPU waiting for other CPUs (smp_call_function) is stuck in that call.
    """
    reliable = [f for f in frames if not f.unreliable]
    for frame in reliable:
        if _CROSS_CPU_CALL.match(base_name(frame.func)):
            return Frame(func="smp_call_function" if frame.func.startswith("smp_call_function_many")
                         else frame.func)
    for index, frame in enumerate(reliable):
        if index and is_dispatcher(frame.func):
            for candidate in reversed(reliable[:index]):
                if not is_helper(candidate.func):
                    return candidate
    return first_culprit(reliable)


def syscall_name(func: str) -> str:
    """__x64_sys_mount, __se_sys_mount -> sys_mount (old kernels print SyS_mount: kept)."""
    return _SYSCALL_STUB.sub("sys_", func)


def interrupted_part(frames: List[Frame]) -> List[Frame]:
    """Frames below the timer interrupt entry (the code that was running), or []."""
    for index in range(len(frames)):
        if _TIMER_ENTRY.match(base_name(frames[index].func)) and not frames[index].unreliable:
            return frames[index + 1:]
    return []
