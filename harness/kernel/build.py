"""`kstress build`: source + patch series + config -> cached kernel artifacts.

Cache layout under ``<cache_dir or cache_root()>/kernel`` (cache_dir is the
kstress cache root, shared with the initramfs/workload/accel caches):
  src/<source-id>/          pristine tree, unpacked once per tarball / commit
  work/<work-id>/           working copy the series is applied to (lock: work/<work-id>.lock)
  obj/<work-id>.config/     scratch build dir where the .config is generated
  obj/<work-id>-<cfg>/      O= build dir, one per working copy and resulting .config
                            (not per series, so a new patch rebuilds incrementally)
  builds/<key>/             published artifacts + meta.json; appears by one rename
  failed/<key>.log          log of the last failed build with that key
One lock, the working copy's, covers the working copy and all its build
dirs: whoever holds it may patch, configure and build. make inherits the lock
descriptor, so an orphaned make (our process SIGKILLed) still holds it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import cache, log
from harness.cache_entries import touch
from harness.errors import CouldNotTest, UsageError
from harness.kernel import patches, source
from harness.kernel.kconfig import Setting, parse_fragment, requested, verify
from harness.kernel.source import DEFAULT_SOURCE
from harness.paths import default_fragments
from harness.procs import die_with_parent
from harness.toolchain import toolchain_id

KEY_SCHEMA = 1
PROGRESS_EVERY = 15.0
MAX_ERROR_LINES = 20
_CC_LINE = re.compile(r"^\s+CC\s+(\[M\]\s+)?\S+\.o\s*$")
_TARGET = re.compile(r"^[A-Za-z0-9_.-]*config$")

__all__ = ["BuildRequest", "KernelBuild", "build_kernel", "DEFAULT_SOURCE", "compute_key"]


def _default_fragment_paths() -> list[str]:
    return [str(p) for p in default_fragments()]


@dataclass
class BuildRequest:
    source: str | None = None
    ref: str | None = None
    patches: str | None = None
    base_config: str = "tinyconfig"
    fragments: list[str] = field(default_factory=_default_fragment_paths)
    jobs: int | None = None


@dataclass
class KernelBuild:
    key: str
    artifact_dir: Path
    bzimage: Path
    vmlinux: Path
    system_map: Path
    config: Path
    build_log: Path
    meta: dict
    cache_hit: bool


ARTIFACTS = {"bzimage": "bzImage", "vmlinux": "vmlinux", "system_map": "System.map", "config": "config"}


def _kernel_build(entry: Path, hit: bool) -> KernelBuild:
    touch(entry)  # the LRU order of `kstress cache prune`
    meta = json.loads((entry / "meta.json").read_text())
    return KernelBuild(key=entry.name, artifact_dir=entry, build_log=entry / "build.log", meta=meta,
                       cache_hit=hit, **{k: entry / v for k, v in ARTIFACTS.items()})


def cached_build(key: str, cache_dir: Path | None = None) -> KernelBuild | None:
    """The cache's kernel of ``key``, if it still holds it (a repro runs the very kernel of its run)."""
    entry = kernel_root(cache_dir) / "builds" / key
    return _kernel_build(entry, True) if key and "/" not in key and (entry / "meta.json").is_file() else None


@dataclass
class Plan:
    """Everything the build depends on, resolved and validated before any work."""
    src: source.Source
    series: list[patches.Patch]
    base_target: str | None
    base_file: Path | None
    fragments: list[Path]
    want: dict[str, Setting]
    compiler: str
    key_inputs: dict
    key: str


def plan(req: BuildRequest, root: Path) -> Plan:
    """``root`` is the kernel cache (kernel_root()); it holds the tarball hash memo."""
    src = source.resolve(req.source, req.ref, memo_file=root / "sha256-memo.json")
    series = patches.load_series(req.patches) if req.patches else []
    base_target = base_file = None
    bc = req.base_config or "tinyconfig"
    if "/" in bc or Path(bc).is_file():
        base_file = Path(bc).expanduser().resolve()
        if not base_file.is_file():
            raise UsageError(f"base config {bc} does not exist")
        base_part = {"file_sha256": cache.sha256_file(base_file)}
    elif _TARGET.match(bc):
        base_target = bc
        base_part = {"target": bc}
    else:
        raise UsageError(f"base config {bc!r} is neither a file nor a make *config target such as tinyconfig")
    frags = [Path(f).expanduser().resolve() for f in req.fragments]
    for f in frags:
        if not f.is_file():
            raise UsageError(f"config fragment {f} does not exist")
    want = requested([parse_fragment(f) for f in frags])
    compiler = toolchain_id()
    key_inputs = {
        "schema": KEY_SCHEMA,
        "source": src.key_part(),
        "patches": [p.sha256 for p in series],
        "base_config": base_part,
        "fragments": [cache.sha256_file(f) for f in frags],
        "compiler": compiler,
    }
    key = hashlib.sha256(json.dumps(key_inputs, sort_keys=True).encode()).hexdigest()[:24]
    return Plan(src, series, base_target, base_file, frags, want, compiler, key_inputs, key)


def compute_key(req: BuildRequest, cache_dir: Path | None = None) -> str:
    return plan(req, kernel_root(cache_dir)).key


def kernel_root(cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or cache.cache_root()) / "kernel"


# ---------------------------------------------------------------- running make

def _make_argv(work: Path, bdir: Path, extra: list[str], cc: str | None) -> list[str]:
    argv = ["make", "-C", str(work), f"O={bdir}"]
    if cc:
        argv.append(f"CC={cc}")
    return argv + extra


def _run_logged(argv: list[str], logf, what: str, lock_fd: int, cwd: Path | None = None,
                count_objects: bool = False, log_path: Path | None = None) -> tuple[int, int]:
    """Run ``argv`` with output appended to the open log; report progress every PROGRESS_EVERY s.

    Returns (exit status, objects compiled according to the log).
    """
    logf.write(f"$ {' '.join(argv)}\n")
    logf.flush()
    start = os.lseek(logf.fileno(), 0, os.SEEK_CUR)  # children write through the same descriptor
    env = dict(os.environ, LC_ALL="C")
    proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                            env=env, pass_fds=(lock_fd,),
                            # If kstress is SIGKILLed, make gets SIGTERM (and deletes its
                            # partial targets) instead of running on unsupervised.
                            preexec_fn=die_with_parent(signal.SIGTERM))
    t0 = time.monotonic()
    objects, pos = 0, start
    try:
        while True:
            try:
                proc.wait(timeout=PROGRESS_EVERY)
                break
            except subprocess.TimeoutExpired:
                if count_objects and log_path:
                    objects, pos = _count_objects(log_path, pos, objects)
                    log.info(f"{what}: {objects} objects compiled, {time.monotonic() - t0:.0f}s")
                else:
                    log.info(f"{what}: {time.monotonic() - t0:.0f}s")
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C, exception): do not leave make running
            proc.terminate()
            proc.wait()
    if count_objects and log_path:
        objects, _ = _count_objects(log_path, pos, objects)
    return proc.returncode, objects


def _count_objects(log_path: Path, pos: int, n: int) -> tuple[int, int]:
    with open(log_path, "rb") as f:
        f.seek(pos)
        data = f.read()
    cut = data.rfind(b"\n") + 1  # count complete lines only
    for line in data[:cut].decode(errors="replace").splitlines():
        if _CC_LINE.match(line):
            n += 1
    return n, pos + cut


def error_summary(log_text: str, limit: int = MAX_ERROR_LINES) -> list[str]:
    """The compiler's error lines and make's *** lines: what a human needs from a failed build."""
    errs, stars = [], []
    log_text = re.sub(r"\x1b\[[0-9;]*[mK]", "", log_text)  # in case gcc/ccache colour the diagnostics
    for line in log_text.splitlines():
        if "***" in line and line.startswith("make"):
            stars.append(line)
        elif re.search(r"\berror:|undefined reference to|^ERROR:|^\s*\*\*\*", line):
            errs.append(line)
    stars = stars[:1] + stars[-1:] if len(stars) > 1 else stars  # the failing target, and make's verdict
    errs = errs[: max(1, limit - len(stars))]
    lines = errs + stars
    if not lines:
        lines = log_text.strip().splitlines()[-min(limit, 10):]
    return lines


def _fail(plan_: Plan, root: Path, log_src: Path, what: str) -> CouldNotTest:
    failed = root / "failed" / f"{plan_.key}.log"
    failed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(log_src, failed)
    work = f"{root / 'work' / plan_.src.work_id}/"
    lines = [x.replace(work, "") for x in error_summary(log_src.read_text(errors="replace"))]  # tree-relative paths
    return CouldNotTest(f"{what} failed (full log: {failed}):\n" + "\n".join("  " + x for x in lines))


# ---------------------------------------------------------------- stages

def _configure(p: Plan, work: Path, root: Path, logf, log_path: Path, lock_fd: int, cc: str | None) -> Path:
    """Generate the .config in a scratch dir; return the build dir for that exact .config."""
    obj = root / "obj"
    scratch = obj / f"{p.src.work_id}.config"
    scratch.mkdir(parents=True, exist_ok=True)
    if p.base_file:
        shutil.copyfile(p.base_file, scratch / ".config")
    else:
        rc, _ = _run_logged(_make_argv(work, scratch, [p.base_target], cc), logf, "config", lock_fd)
        if rc:
            err = _fail(p, root, log_path, f"make {p.base_target}")
            if "No rule to make target" in log_path.read_text(errors="replace"):
                raise UsageError(f"base config {p.base_target!r} is not a make target of this kernel tree")
            raise err
    # Copies with plain names: merge_config.sh splits its file list on spaces.
    frag_copies = []
    for i, f in enumerate(p.fragments):
        dst = scratch / f"kstress-fragment-{i}.config"
        shutil.copyfile(f, dst)
        frag_copies.append(str(dst))
    merge = work / "scripts" / "kconfig" / "merge_config.sh"
    # cwd=scratch: the script puts its temp files in the current directory.
    rc, _ = _run_logged(["sh", str(merge), "-m", "-O", str(scratch), str(scratch / ".config"), *frag_copies],
                        logf, "config", lock_fd, cwd=scratch)
    if rc:
        raise _fail(p, root, log_path, "merge_config.sh")
    rc, _ = _run_logged(_make_argv(work, scratch, ["olddefconfig"], cc), logf, "config", lock_fd)
    if rc:
        raise _fail(p, root, log_path, "make olddefconfig")
    verify(p.want, scratch / ".config")
    cfg = (scratch / ".config").read_bytes()
    bdir = obj / f"{p.src.work_id}-{hashlib.sha256(cfg).hexdigest()[:16]}"
    bdir.mkdir(parents=True, exist_ok=True)
    if not ((bdir / ".config").is_file() and (bdir / ".config").read_bytes() == cfg):
        # Only a changed .config gets a new mtime; Kbuild then re-syncs just the changed symbols.
        cache.atomic_write_bytes(bdir / ".config", cfg)
    touch(bdir)  # the LRU order of `kstress cache prune`
    return bdir


def build_kernel(req: BuildRequest, cache_dir: Path | None = None) -> KernelBuild:
    t_start = time.monotonic()
    root = kernel_root(cache_dir)
    p = plan(req, root)
    builds = root / "builds"
    entry = builds / p.key
    if (entry / "meta.json").is_file():
        log.info(f"kernel build cache hit: {entry}")
        return _kernel_build(entry, True)

    work = root / "work" / p.src.work_id
    with cache.locked(work) as lock_fd:
        if (entry / "meta.json").is_file():  # built by another kstress while we waited
            return _kernel_build(entry, True)
        timings = {}
        t = time.monotonic()
        pristine = source.ensure_pristine(p.src, root / "src")
        for used in (pristine, work):
            if used.parent.parent == root:  # ours, never the user's own source directory
                touch(used)  # the LRU order of `kstress cache prune`
        state_touched = patches.touched_now(work)
        if source.ensure_work(p.src, pristine, work, state_touched):
            patches.reset_state(work)
        timings["source_s"] = round(time.monotonic() - t, 1)

        t = time.monotonic()
        if p.series or state_touched:
            log.info(f"applying {len(p.series)} patch(es)")
        applied = patches.apply_series(p.series, pristine, work)
        timings["patch_s"] = round(time.monotonic() - t, 1)

        cache.clean_stale_tmp(builds)
        tmp = cache.make_tmp_dir(builds, p.key + "-")
        try:
            log_path = tmp / "build.log"
            cc = "ccache gcc" if shutil.which("ccache") else None
            # CC stays "ccache gcc" under CCACHE_DISABLE (a new CC would rebuild everything);
            # ccache then just runs gcc.
            ccache_used = bool(cc) and os.environ.get("CCACHE_DISABLE", "") in ("", "0", "false")
            jobs = req.jobs or os.cpu_count() or 1
            with open(log_path, "w") as logf:
                t = time.monotonic()
                log.info("configuring")
                bdir = _configure(p, work, root, logf, log_path, lock_fd, cc)
                timings["config_s"] = round(time.monotonic() - t, 1)

                t = time.monotonic()
                log.info(f"building bzImage and vmlinux in {bdir} with -j{jobs}{' and ccache' if ccache_used else ''}")
                rc, objects = _run_logged(_make_argv(work, bdir, [f"-j{jobs}", "bzImage", "vmlinux"], cc),
                                          logf, "building", lock_fd, count_objects=True, log_path=log_path)
                timings["build_s"] = round(time.monotonic() - t, 1)
            if rc:
                raise _fail(p, root, log_path, "kernel build")
            log.info(f"built in {timings['build_s']:.0f}s, {objects} objects compiled")

            for name, src_rel in (("bzImage", "arch/x86/boot/bzImage"), ("vmlinux", "vmlinux"),
                                  ("System.map", "System.map"), ("config", ".config")):
                shutil.copy2(bdir / src_rel, tmp / name)
            release = bdir / "include" / "config" / "kernel.release"
            timings["total_s"] = round(time.monotonic() - t_start, 1)
            meta = {
                "key": p.key,
                "key_inputs": p.key_inputs,
                "kernel_version": source.kernel_version(work),
                "kernel_release": release.read_text().strip() if release.is_file() else None,
                "debian_package": source.debian_package(p.src.path) if p.src.kind == "tarball" else None,
                "source": {"kind": p.src.kind, "path": str(p.src.path), "identity": p.src.identity, "ref": p.src.ref},
                "patches": [{"name": x.name, "sha256": x.sha256} for x in p.series],
                "patched_files": applied["touched"],
                "base_config": p.base_target or str(p.base_file),
                "fragments": [{"path": str(f), "sha256": h} for f, h in zip(p.fragments, p.key_inputs["fragments"])],
                "compiler": p.compiler,
                "ccache": ccache_used,
                "jobs": jobs,
                "objects_compiled": objects,
                "build_dir": str(bdir),
                "work_dir": str(work),
                "timings": timings,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            # meta.json last: its presence marks a complete entry (and the rename publishes it).
            cache.atomic_write_json(tmp / "meta.json", meta)
            os.chmod(tmp, 0o755)  # mkdtemp made it private; entries are for anyone who may read the cache
            for f in tmp.iterdir():
                os.chmod(f, 0o755 if f.name in ("vmlinux", "bzImage") else 0o644)
            cache.publish_dir(tmp, entry)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    log.info(f"kernel artifacts: {entry}")
    return _kernel_build(entry, False)
