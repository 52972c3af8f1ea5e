"""The entries of the kstress cache: what they are, how big, when last used,
and pruning them to a size limit, least recently used first.

Bisect and soak make many kernels (~48 MB of artifacts each, a few hundred
MB per build directory), so a cache that lives through months of nights
needs eviction. Rules:
  * "last used" is the entry's mtime, set by ``touch`` whenever a cache hit
    or a build hands the entry out (atime is unreliable: relatime, noatime);
  * an entry in use is never evicted. A run holds a shared lock on
    ``<entry>.use`` for the kernel and the image it boots (``in_use``); a
    build holds the entry's ``<entry>.lock`` (or its working copy's lock,
    for source trees and build directories). Pruning takes both locks
    without waiting and skips the entry when either is held;
  * an evicted entry disappears by one rename (then it is deleted), so no
    reader ever sees half of it.
ccache manages its own size (``ccache -M``); it is listed, never pruned here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from harness import log
from harness.cache import TMP_PREFIX, cache_root, lock_path
from harness.errors import UsageError

USE_SUFFIX = ".use"
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\Z", re.I)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Kind:
    name: str
    pattern: str  # glob under the cache root
    # "work": guarded by its kernel working copy's lock; "any-work": by every
    # working copy's (a build copies pristine files back); "": by its own locks.
    guard: str = ""
    evictable: bool = True


KINDS = (
    Kind("kernel", "kernel/builds/*"),
    Kind("kernel-build-dir", "kernel/obj/*", guard="work"),
    Kind("kernel-work-tree", "kernel/work/*", guard="work"),
    Kind("kernel-source", "kernel/src/*", guard="any-work"),
    Kind("debian-image", "debian/image-*"),
    Kind("debian-rootfs", "debian/rootfs-*"),
    Kind("initramfs", "initramfs/*.cpio.gz"),
    Kind("workload", "workloads/*"),
    Kind("selftest", "selftests/*"),  # mm selftest trees and binaries (stress/adapters/selftest.py)
    Kind("ccache", "ccache", evictable=False),
)
_NOT_ENTRIES = (".lock", USE_SUFFIX, ".json")


@dataclass
class Entry:
    kind: Kind
    path: Path
    size: int  # bytes on disk
    last_used: float  # epoch seconds

    @property
    def guards(self) -> list[Path]:
        """The lock files that, when held by anyone, mean the entry is in use."""
        if self.kind.guard == "work":
            return [lock_path(self.path.parent.parent / "work" / self.work_id)]
        if self.kind.guard == "any-work":
            return [lock_path(self.path), *sorted((self.path.parent.parent / "work").glob("*.lock"))]
        return [lock_path(self.path), use_path(self.path)]

    @property
    def work_id(self) -> str:
        """The kernel working copy a build directory belongs to: obj/<work-id>.config
        or obj/<work-id>-<config hash> (harness.kernel.build); a work tree is its own."""
        name = self.path.name
        if self.path.parent.name != "obj":
            return name
        return name.removesuffix(".config") if name.endswith(".config") else name.rpartition("-")[0]


def use_path(entry: Path) -> Path:
    return Path(entry).with_name(Path(entry).name + USE_SUFFIX)


def touch(entry: Path) -> None:
    """Mark ``entry`` as used now (its mtime): the LRU order of pruning."""
    with contextlib.suppress(OSError):
        os.utime(entry)


@contextlib.contextmanager
def in_use(entries: list[Path]) -> Iterator[None]:
    """Shared locks on ``<entry>.use`` for the block: pruning skips these entries."""
    fds = []
    try:
        for entry in entries:
            touch(entry)
            fd = os.open(use_path(entry), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        for fd in fds:
            os.close(fd)


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path`` (sparse disks count what they hold)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    total = st.st_blocks * 512
    if not os.path.isdir(path) or os.path.islink(path):
        return total
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def entries(root: Path | None = None) -> list[Entry]:
    """Every entry of the cache, least recently used first."""
    root = Path(root) if root is not None else cache_root()
    out = []
    for kind in KINDS:
        for path in root.glob(kind.pattern):
            if path.name.startswith(TMP_PREFIX) or path.name.endswith(_NOT_ENTRIES):
                continue
            with contextlib.suppress(FileNotFoundError):
                out.append(Entry(kind, path, disk_usage(path), path.stat().st_mtime))
    return sorted(out, key=lambda e: e.last_used)


def parse_size(text: str) -> int:
    """'40G', '500M', '1.5T', '123' (bytes) -> bytes."""
    m = _SIZE.match(str(text).strip())
    if not m:
        raise UsageError(f"expected a size such as 40G, 500M or 2T, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def human(n: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


@contextlib.contextmanager
def _held_by_nobody(locks: list[Path]) -> Iterator[bool]:
    """Exclusive locks on ``locks`` without waiting: yields False if anyone holds one."""
    fds = []
    try:
        for lp in locks:
            if not lp.exists():
                continue
            fd = os.open(lp, os.O_RDWR | os.O_CLOEXEC)
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                yield False
                return
        yield True
    finally:
        for fd in fds:
            os.close(fd)


def evict(entry: Entry) -> bool:
    """Remove ``entry`` unless it is in use; True if it is gone."""
    with _held_by_nobody(entry.guards) as free:
        if not free:
            return False
        doomed = entry.path.with_name(f"{TMP_PREFIX}{os.getpid()}-evict-{entry.path.name}")
        try:
            os.rename(entry.path, doomed)
        except FileNotFoundError:
            return True
    if doomed.is_dir():
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            doomed.unlink()
    if entry.kind.guard == "work" and entry.path.parent.name == "work":
        with contextlib.suppress(FileNotFoundError):
            entry.path.with_name(entry.path.name + ".patches.json").unlink()
    return True


@dataclass
class PruneResult:
    evicted: list[Entry]
    busy: list[Entry]  # over the limit but in use
    size_before: int
    size_after: int


def prune(max_size: int, root: Path | None = None, dry_run: bool = False) -> PruneResult:
    """Evict least recently used entries until the cache holds at most ``max_size`` bytes."""
    all_entries = entries(root)
    before = sum(e.size for e in all_entries)
    size, evicted, busy = before, [], []
    for e in all_entries:
        if size <= max_size:
            break
        if not e.kind.evictable:
            continue
        if dry_run or evict(e):
            evicted.append(e)
            size -= e.size
        else:
            busy.append(e)
    return PruneResult(evicted, busy, before, size)


def list_command(root: Path | None = None) -> int:
    now = time.time()
    rows = entries(root)
    print(f"{'kind':<18} {'size':>8} {'last used':>10}  path")
    for e in rows:
        print(f"{e.kind.name:<18} {human(e.size):>8} {_age(now - e.last_used):>10}  {e.path}")
    print(f"{len(rows)} entries, {human(sum(e.size for e in rows))} in {Path(root) if root else cache_root()}")
    return 0


def prune_command(max_size: str, root: Path | None = None, dry_run: bool = False) -> int:
    res = prune(parse_size(max_size), root, dry_run)
    verb = "would evict" if dry_run else "evicted"
    for e in res.evicted:
        print(f"{verb} {e.kind.name} {e.path} ({human(e.size)})")
    for e in res.busy:
        log.warn(f"in use, kept: {e.kind.name} {e.path} ({human(e.size)})")
    print(f"cache {human(res.size_before)} -> {human(res.size_after)} (limit {human(parse_size(max_size))})")
    return 0


def _age(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n:
            return f"{seconds / n:.0f}{unit} ago"
    return "now"
