"""Kernel source resolution: what the user named, its identity, and a pristine tree.

Kinds and identities (the identity goes into the cache key):
  tarball    sha256 of its bytes (memoised by path, size and mtime_ns);
  git        the commit id the ref resolves to (exported with ``git archive``,
             so the user's repository and checkout are never written to);
  directory  sha256 over every file's relative path, size and mtime_ns
             (``.git`` excluded). Chosen over "the git tree if clean"
             because it is right for dirty trees and trees outside git too,
             and costs a stat per file (about a second for a kernel tree);
             touching a file without changing it costs a cache miss but the
             rebuild is incremental.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import cache, log
from harness.errors import CouldNotTest, UsageError

DEFAULT_SOURCE = Path("/usr/src/linux-source-6.12.tar.xz")
TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar.zst")
PROGRESS_EVERY = 15.0


@dataclass
class Source:
    kind: str  # "tarball" | "git" | "directory"
    path: Path  # what the user named (resolved)
    identity: str  # sha256 / commit id / stat hash
    ref: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def source_id(self) -> str:
        """Names the unpacked pristine tree in the cache."""
        return f"{self.kind}-{self.identity[:20]}"

    @property
    def work_id(self) -> str:
        """Names the working copy. A directory's is keyed by its path, not its content,
        so editing the directory updates the same copy (and build dir) incrementally."""
        if self.kind == "directory":
            return "dir-" + hashlib.sha256(str(self.path).encode()).hexdigest()[:20]
        return self.source_id

    def key_part(self) -> dict:
        return {"kind": self.kind, "identity": self.identity}


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")


def is_kernel_tree(d: Path) -> bool:
    return (d / "Makefile").is_file() and (d / "Kconfig").is_file() and (d / "scripts" / "kconfig").is_dir()


def _git_dir(p: Path) -> bool:
    """True if ``p`` is a bare repository or the top of a work tree (not merely inside one)."""
    r = _run(["git", "-C", str(p), "rev-parse", "--is-bare-repository"])
    if r.returncode != 0:
        return False
    if r.stdout.strip() == "true":
        return True
    r = _run(["git", "-C", str(p), "rev-parse", "--show-toplevel"])
    return r.returncode == 0 and Path(r.stdout.strip()).resolve() == p.resolve()


def _is_tarball(p: Path) -> bool:
    if not p.name.endswith(TARBALL_SUFFIXES):
        return False
    try:
        return tarfile.is_tarfile(p) if not p.name.endswith(".tar.zst") else True
    except OSError:
        return False


def dir_identity(d: Path) -> str:
    h = hashlib.sha256()
    for root, dirs, files in os.walk(d):
        dirs[:] = sorted(x for x in dirs if x != ".git")
        rel_root = os.path.relpath(root, d)
        for name in sorted(files):
            p = os.path.join(root, name)
            st = os.lstat(p)
            h.update(f"{os.path.join(rel_root, name)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode:o}\n".encode())
    return h.hexdigest()


def resolve(spec: str | None, ref: str | None = None, memo_file: Path | None = None) -> Source:
    """Validate the user's source argument and compute its identity (no unpacking)."""
    p = Path(spec or DEFAULT_SOURCE).expanduser()
    if not p.exists():
        hint = " (install the linux-source package or pass --source)" if spec is None else ""
        raise UsageError(f"kernel source {p} does not exist{hint}")
    p = p.resolve()
    if ref is not None:
        if not (p.is_dir() and _git_dir(p)):
            raise UsageError(f"--ref {ref} needs a git repository, but {p} is not one")
        r = _run(["git", "-C", str(p), "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"])
        if r.returncode != 0 or not r.stdout.strip():
            raise UsageError(f"unknown ref {ref!r} in git repository {p}")
        return Source("git", p, r.stdout.strip(), ref=ref)
    if p.is_file():
        if _is_tarball(p):
            return Source("tarball", p, cache.sha256_file_memo(p, memo_file))
        raise UsageError(f"kernel source {p} is neither a tarball (.tar/.tar.gz/.tar.xz), "
                         "a git repository nor a kernel tree")
    if p.is_dir():
        if is_kernel_tree(p):
            return Source("directory", p, dir_identity(p))
        if _git_dir(p):  # a bare repository, or a checkout that is not a kernel tree at HEAD's files: export HEAD
            r = _run(["git", "-C", str(p), "rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
            if r.returncode == 0 and r.stdout.strip():
                return Source("git", p, r.stdout.strip(), ref="HEAD")
        raise UsageError(f"kernel source {p} is a directory but not a kernel tree "
                         "(no Makefile, Kconfig, scripts/kconfig)")
    raise UsageError(f"kernel source {p} is neither a tarball, a git repository nor a kernel tree")


def kernel_version(tree: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL+EXTRAVERSION from the top Makefile, as ``make kernelversion`` prints it."""
    vals = {}
    for line in (tree / "Makefile").read_text(errors="replace").splitlines()[:20]:
        m = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(.*?)\s*$", line)
        if m:
            vals[m.group(1)] = m.group(2)
    v = f"{vals.get('VERSION', '?')}.{vals.get('PATCHLEVEL', '?')}"
    if vals.get("SUBLEVEL") not in (None, "", "0"):
        v += f".{vals['SUBLEVEL']}"
    return v + vals.get("EXTRAVERSION", "")


def debian_package(path: Path) -> dict | None:
    """The Debian package owning ``path`` and its version (e.g. linux-source-6.12 6.12.117-1~deb12u1), if any."""
    if not shutil.which("dpkg-query"):
        return None
    r = _run(["dpkg-query", "-S", str(path)])
    if r.returncode != 0 or ":" not in r.stdout:
        return None
    pkg = r.stdout.split(":", 1)[0].split(",")[0].strip()
    v = _run(["dpkg-query", "-W", "-f", "${Version}", pkg])
    return {"package": pkg, "version": v.stdout.strip()} if v.returncode == 0 else None


def _progress_pipe(argv: list[str], what: str, stdin=None) -> None:
    """Run a command whose stdout is one line per item, reporting the count every PROGRESS_EVERY s."""
    with tempfile.TemporaryFile() as errf:  # a file, not a pipe: nothing can block on a full stderr
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=errf)
        n, last = 0, time.monotonic()
        assert proc.stdout is not None
        for _ in proc.stdout:
            n += 1
            if time.monotonic() - last >= PROGRESS_EVERY:
                log.info(f"{what}: {n} files so far")
                last = time.monotonic()
        if proc.wait() != 0:
            errf.seek(0)
            err = errf.read().decode(errors="replace").strip().splitlines() or [f"exit {proc.returncode}"]
            raise CouldNotTest(f"{what} failed: {err[-1]}")
    log.info(f"{what}: {n} files")


def _find_tree(d: Path) -> Path:
    if is_kernel_tree(d):
        return d
    subs = [x for x in d.iterdir() if x.is_dir()]
    if len(subs) == 1 and is_kernel_tree(subs[0]):
        return subs[0]
    raise UsageError("the source does not contain a kernel tree (no top-level Makefile, Kconfig, scripts/kconfig)")


def _unpack(src: Source, tmp: Path) -> Path:
    if src.kind == "tarball":
        log.info(f"unpacking {src.path} into the cache (once per tarball)")
        _progress_pipe(["tar", "-xvf", str(src.path), "-C", str(tmp)], "unpacking")
    else:
        log.info(f"exporting {src.ref} ({src.identity[:12]}) from {src.path} with git archive")
        arch = subprocess.Popen(["git", "-C", str(src.path), "archive", "--format=tar", src.identity],
                                stdout=subprocess.PIPE)
        try:
            _progress_pipe(["tar", "-xvf", "-", "-C", str(tmp)], "exporting", stdin=arch.stdout)
        finally:
            if arch.stdout:
                arch.stdout.close()
            if arch.wait() != 0:
                raise CouldNotTest(f"git archive of {src.identity} in {src.path} failed")
    return _find_tree(tmp)


def ensure_pristine(src: Source, src_root: Path) -> Path:
    """A pristine tree for ``src``: the user's own directory, or one unpacked once into the cache."""
    if src.kind == "directory":
        return src.path
    final = src_root / src.source_id
    if (final / "Makefile").is_file():
        return final
    with cache.locked(final):
        if (final / "Makefile").is_file():  # another kstress unpacked it while we waited
            return final
        cache.clean_stale_tmp(src_root)
        tmp = cache.make_tmp_dir(src_root, "unpack-")
        try:
            t0 = time.monotonic()
            tree = _unpack(src, tmp)
            if tree != tmp:  # tarballs hold one top directory: publish that one
                os.rename(tree, final)
            else:
                cache.publish_dir(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info(f"unpacked in {time.monotonic() - t0:.0f}s")
    return final


def ensure_work(src: Source, pristine: Path, work: Path, touched: list[str]) -> bool:
    """Create or refresh the working copy (caller holds its lock); True if created from scratch.

    Tarball/git: hard links to the pristine tree (cheap; patched files are
    replaced by rename, never written through a link). Directory: rsync of the
    user's tree, which copies only files whose size or mtime changed; files
    the applied series touched are excluded here and reconciled by
    patches.apply_series against the user's current version.
    """
    if src.kind == "directory":
        log.info(f"syncing {src.path} into the working copy {work}")
        work.mkdir(parents=True, exist_ok=True)
        excl = work.with_name(work.name + ".exclude")
        excl.write_text("".join(f"/{t}\n" for t in touched))
        r = _run(["rsync", "-a", "--delete", "--exclude=/.git", f"--exclude-from={excl}",
                  f"{src.path}/", f"{work}/"])
        if r.returncode != 0:
            raise CouldNotTest(f"rsync of {src.path} failed: {r.stderr.strip().splitlines()[-1:]}")
        return False
    if (work / "Makefile").is_file():
        return False
    if work.exists():
        shutil.rmtree(work)  # an interrupted copy: start over
    cache.clean_stale_tmp(work.parent)
    tmp = cache.make_tmp_dir(work.parent, "work-")
    os.rmdir(tmp)
    r = _run(["cp", "-al", str(pristine), str(tmp)])
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        r = _run(["cp", "-a", str(pristine), str(tmp)])  # another filesystem: copy
        if r.returncode != 0:
            raise CouldNotTest(f"cannot copy {pristine} to {tmp}: {r.stderr.strip()}")
    os.rename(tmp, work)
    return True
