"""Generic cache primitives shared by the kernel, initramfs and workload caches.

Rules every cache follows:
  * an entry is a directory that appears by one ``os.rename`` when complete,
    so a killed writer leaves at most a ``.tmp-<pid>-*`` directory that no
    reader mistakes for an entry;
  * a shared resource (working copy, build directory) is used under an
    ``fcntl.flock`` on a sibling ``<name>.lock`` file, which the kernel drops
    when the holder dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from harness import log

TMP_PREFIX = ".tmp-"


def cache_root() -> Path:
    """``$KSTRESS_CACHE`` if set, else ``~/.cache/kstress``."""
    env = os.environ.get("KSTRESS_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "kstress"
    return root.expanduser()


def lock_path(path: Path) -> Path:
    """The lock file that guards ``path`` (a sibling, so ``path`` itself may be renamed or deleted)."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def locked(path: Path, shared: bool = False) -> Iterator[int]:
    """Hold an flock guarding ``path`` for the duration of the block.

    Yields the lock's file descriptor: pass it to child processes
    (``subprocess.Popen(pass_fds=...)``) that must keep the resource locked
    even if this process is killed while they still run.
    """
    lp = lock_path(path)
    lp.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            log.info(f"waiting for {lp} (another kstress holds it)")
            fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)  # closing our descriptor drops our hold on the lock


def make_tmp_dir(parent: Path, label: str = "") -> Path:
    """A fresh directory inside ``parent`` (same filesystem, so publish_dir's rename is atomic)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{label}", dir=parent))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_tmp(parent: Path) -> None:
    """Remove temp directories left in ``parent`` by processes that no longer exist."""
    parent = Path(parent)
    if not parent.is_dir():
        return
    for p in parent.iterdir():
        if not p.name.startswith(TMP_PREFIX):
            continue
        pid_s = p.name[len(TMP_PREFIX):].split("-", 1)[0]
        if pid_s.isdigit() and not _pid_alive(int(pid_s)):
            shutil.rmtree(p, ignore_errors=True)


def publish_dir(tmpdir: Path, final: Path) -> bool:
    """Move a completed ``tmpdir`` to ``final`` atomically.

    Returns False (and removes ``tmpdir``) if another process published
    ``final`` first: entries are keyed by their inputs, so theirs is as good.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmpdir, final)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        shutil.rmtree(tmpdir, ignore_errors=True)
        return False
    return True


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file_memo(path: Path, memo_file: Path | None = None) -> str:
    """sha256 of a (large) file, memoised by (realpath, size, mtime_ns).

    Rehashing a 150 MB tarball costs about a second per run; the memo makes a
    cache hit cost a stat. A changed file changes size or mtime_ns.
    """
    path = Path(path).resolve()
    st = path.stat()
    memo_file = Path(memo_file) if memo_file else cache_root() / "sha256-memo.json"
    stamp = [st.st_size, st.st_mtime_ns]
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    ent = memo.get(str(path))
    if isinstance(ent, dict) and ent.get("stamp") == stamp and isinstance(ent.get("sha256"), str):
        return ent["sha256"]
    digest = sha256_file(path)
    memo[str(path)] = {"stamp": stamp, "sha256": digest}
    # Concurrent writers may drop each other's entries; that only costs a rehash.
    atomic_write_json(memo_file, memo)
    return digest
