"""The Debian guest image: bookworm with systemd, sshd and real userspace tools.

Why a second image: the initramfs has busybox and static binaries only. Python
workloads, stress-ng, numactl and a real SSH channel need a distribution, and
a disk: the initramfs lives in the guest's RAM, which is what we stress.

Two cached stages, each keyed by its inputs and published by one rename:

  <cache>/debian/rootfs-<key>/tree     mmdebstrap --variant=minbase bookworm, plus the
                                       recipe in images/debian/ (packages, units, overlay/)
                                       and ks-run; needs root (ownership, chroot)
  <cache>/debian/image-<key>/disk.img  raw ext4 from ``mkfs.ext4 -d``: the tree plus the
                                       static workloads in /usr/bin; nothing is ever mounted

The rootfs key hashes what we control (the parsed package list, the units,
the overlay's contents and exec bits, ks-run, release, variant), not the
archive's package versions: a cached rootfs stays as built (meta.json lists
its versions) until the recipe changes. The mirror is not in the key either:
mmdebstrap's default (Debian's own registry, with -updates and -security for a
stable release) is what a stock Debian host's apt uses.

A run boots a qcow2 overlay (``make_overlay``) whose backing file is the
cached image, so the image itself is never written. The root SSH key comes
per run from QEMU's fw_cfg (see images/debian/README.md); the image has none.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness import cache, log
from harness.cache_entries import touch
from harness.errors import CouldNotTest, KstressError, UsageError
from harness.guest.channels import serial
from harness.guest.images.initramfs import NAME_RE, WORKLOAD_DIR, is_static_elf
from harness.paths import IMAGES_DIR
from harness.procs import die_with_parent

RECIPE_DIR = IMAGES_DIR / "debian"
KS_RUN_SRC = IMAGES_DIR / "initramfs" / "ks-run"  # one file, shared with the initramfs
KS_RUN = serial.KS_RUN.lstrip("/")
RELEASE = "bookworm"
VARIANT = "minbase"
KEY_SCHEMA = 1
FREE_SPACE = 512 << 20  # bytes left free in the image for the guest to write
PROGRESS_EVERY = 10.0
HOST_KEY = "etc/ssh/ssh_host_ed25519_key.pub"

# What the kernel command line needs for this image (the harness adds console=, loglevel= etc.).
# systemd: no status lines and only errors on the kernel console, which the harness analyses.
KERNEL_ARGS = ("root=/dev/vda rw rootfstype=ext4 systemd.show_status=false systemd.log_level=err "
               "udev.log_level=err systemd.firstboot=off")

_PKG_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")  # Debian policy 5.6.1
_UNIT_RE = re.compile(r"(enable|mask) ([A-Za-z0-9@_.:-]+\.(?:service|socket|timer|target|mount|path))")


@dataclass(frozen=True)
class DebianImage:
    path: Path  # raw ext4; boot it through make_overlay, never directly
    key: str
    ssh_host_key: str  # "ssh-ed25519 AAAA... root@host": pin it in the SSH channel
    kernel_args: str = KERNEL_ARGS
    cache_hit: bool = False


# ---------------------------------------------------------------- the recipe as data

def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank lines, "#" comments removed."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return [(n, s) for n, line in enumerate(text.splitlines(), 1) if (s := line.split("#", 1)[0].strip())]


def parse_packages(path: Path) -> dict[str, int]:
    """Package name -> line number, from a file of one Debian package name per line."""
    pkgs: dict[str, int] = {}
    for n, s in _lines(path):
        if not _PKG_RE.fullmatch(s):
            raise UsageError(f"{path}:{n}: {s!r} is not a Debian package name")
        pkgs.setdefault(s, n)
    if not pkgs:
        raise UsageError(f"{path}: no packages listed")
    return pkgs


def parse_units(path: Path) -> list[tuple[str, str]]:
    """[(action, unit)] from lines "enable UNIT" / "mask UNIT"."""
    out = []
    for n, s in _lines(path):
        m = _UNIT_RE.fullmatch(" ".join(s.split()))
        if not m:
            raise UsageError(f"{path}:{n}: expected 'enable UNIT' or 'mask UNIT', got {s!r}")
        out.append((m[1], m[2]))
    return out


def overlay_manifest(overlay: Path) -> list[list]:
    """What the overlay puts into the root: [path, "d"], [path, "f", mode, sha256] or [path, "l", target].

    Files get mode 0755 or 0644 by their exec bit (the one bit git keeps), owner root.
    """
    out = []
    for dirpath, dirnames, filenames in os.walk(overlay):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(overlay).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out.append([rel, "l", os.readlink(p)])
            elif stat.S_ISDIR(st.st_mode):
                out.append([rel, "d"])
            elif stat.S_ISREG(st.st_mode):
                out.append([rel, "f", 0o755 if st.st_mode & 0o111 else 0o644, cache.sha256_file(p)])
            else:
                raise UsageError(f"{p}: only files, directories and symlinks may be in the overlay")
    return sorted(out)


def key_inputs(recipe_dir: Path = RECIPE_DIR, release: str = RELEASE, variant: str = VARIANT,
               ks_run: Path = KS_RUN_SRC) -> dict:
    return {
        "schema": KEY_SCHEMA,
        "release": release,
        "variant": variant,
        "packages": sorted(parse_packages(Path(recipe_dir) / "packages")),
        "units": parse_units(Path(recipe_dir) / "units"),
        "overlay": overlay_manifest(Path(recipe_dir) / "overlay"),
        "ks_run": cache.sha256_file(ks_run),
    }


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:24]


def rootfs_key(recipe_dir: Path = RECIPE_DIR, release: str = RELEASE, variant: str = VARIANT,
               ks_run: Path = KS_RUN_SRC) -> str:
    return _digest(key_inputs(recipe_dir, release, variant, ks_run))


# ---------------------------------------------------------------- errors from tools

_MISSING_PKG = [re.compile(r"^E: Unable to locate package (\S+)", re.M),
                re.compile(r"^E: Package '([^']+)' has no installation candidate", re.M)]
_UNREACHABLE = [re.compile(r"^[EW]: Failed to fetch .*", re.M),
                re.compile(r"^.*(?:Could not connect to|Could not resolve|Temporary failure resolving|"
                           r"Connection timed out|Network is unreachable).*", re.M)]


def classify_failure(output: str, packages: dict[str, int], packages_file: Path, cache_dir: Path,
                     what: str) -> KstressError | None:
    """The one-line error for a known failure in mmdebstrap's (apt's) or mkfs's output, or None."""
    if "No space left on device" in output:
        return CouldNotTest(f"{what}: disk full: no space left in the cache directory {cache_dir}")
    for pat in _MISSING_PKG:
        names = list(dict.fromkeys(pat.findall(output)))
        if names:
            where = ", ".join(f"{n} ({packages_file}:{packages[n]})" if n in packages else n for n in names)
            return UsageError(f"Debian package(s) not found in {RELEASE}: {where}")
    for pat in _UNREACHABLE:
        m = pat.search(output)
        if m:
            return CouldNotTest(f"{what}: the Debian package registry is unreachable: {' '.join(m[0].split())}")
    return None


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise CouldNotTest(f"{tool} not found: install Debian's {package}")
    return path


def _no_space(exc: OSError, where: Path) -> KstressError | None:
    if exc.errno == errno.ENOSPC:
        return CouldNotTest(f"disk full: no space left in the cache directory {where}")
    return None


def _remove(path: Path) -> None:
    """rmtree, after lazily unmounting whatever a killed mmdebstrap may have left mounted inside."""
    prefix = str(Path(path).resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [ln.split()[4] for ln in f]
    for mp in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def _clean_stale(parent: Path) -> None:
    for p in parent.glob(cache.TMP_PREFIX + "*"):  # unmount first: clean_stale_tmp only removes
        pid = p.name[len(cache.TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove(p)
    cache.clean_stale_tmp(parent)


# ---------------------------------------------------------------- the root filesystem

def _apt_proxy_opts() -> list[str]:
    """mmdebstrap runs apt with its own configuration: pass on the host's proxy, if it has one."""
    opts = []
    for scheme in ("http", "https"):
        try:
            out = subprocess.run(["apt-config", "shell", "P", f"Acquire::{scheme}::Proxy"],
                                 capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        m = re.match(r"P='([^']+)'", out.strip())
        if m:
            opts.append(f'--aptopt=Acquire::{scheme}::Proxy "{m[1]}"')
    return opts


def _run_progress(argv: list[str], log_path: Path, what: str, lock_fd: int) -> int:
    """Run argv with its output in log_path; log its "I: ..." phases and the elapsed time every ~10 s.

    The child inherits the cache lock: if we are killed, nobody cleans its directory while it still runs.
    """
    t0 = last = time.monotonic()
    pos = 0
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                env=dict(os.environ, LC_ALL="C.UTF-8"), pass_fds=(lock_fd,),
                                preexec_fn=die_with_parent(signal.SIGTERM))  # it cleans up its mounts
        try:
            while True:
                try:
                    proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    pass
                with open(log_path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
                cut = chunk.rfind(b"\n") + 1
                pos += cut
                now = time.monotonic()
                for line in chunk[:cut].decode(errors="replace").splitlines():
                    if line.startswith("I: ") and "hook" not in line:
                        log.info(f"{what}: {line[3:].rstrip('.')} ({now - t0:.0f}s)")
                        last = now
                if proc.returncode is not None:
                    return proc.returncode
                if now - last >= PROGRESS_EVERY:
                    log.info(f"{what}: {now - t0:.0f}s")
                    last = now
        finally:
            if proc.poll() is None:  # interrupted: stop it, it unmounts what it mounted
                proc.terminate()
                proc.wait()


def _install_overlay(recipe_dir: Path, tree: Path, ks_run: Path) -> None:
    overlay = recipe_dir / "overlay"
    for ent in overlay_manifest(overlay):
        dst = tree / ent[0]
        if ent[1] == "d":
            if not dst.is_dir():
                dst.mkdir(mode=0o755)
            continue
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        if ent[1] == "l":
            os.symlink(ent[2], dst)
            continue
        shutil.copyfile(overlay / ent[0], dst)
        os.chown(dst, 0, 0)
        os.chmod(dst, ent[2])
    dst = tree / KS_RUN
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ks_run, dst)
    os.chmod(dst, 0o755)


def _systemctl(tree: Path, units: list[tuple[str, str]]) -> None:
    for action in ("enable", "mask"):
        names = [u for a, u in units if a == action]
        if names:  # the guest's own systemctl, offline in the chroot
            r = subprocess.run(["chroot", str(tree), "systemctl", action, *names], capture_output=True, text=True)
            if r.returncode:
                raise CouldNotTest(f"systemctl {action} {' '.join(names)} in the image failed: "
                                   f"{' '.join(r.stderr.split())[:300]}")


def _dpkg_versions(tree: Path) -> dict[str, str]:
    r = subprocess.run(["chroot", str(tree), "dpkg-query", "-W", "-f", "${Package} ${Version}\n"],
                       capture_output=True, text=True)
    return dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)


def build_rootfs(cache_dir: Path | None = None, *, recipe_dir: Path = RECIPE_DIR, release: str = RELEASE,
                 variant: str = VARIANT, mirror: str | None = None, ks_run: Path = KS_RUN_SRC) -> Path:
    """The cached root tree (a directory) of the recipe; built with mmdebstrap the first time.

    ``mirror``: an apt URI for mmdebstrap; None is mmdebstrap's default (Debian's registry, as the host's apt).
    """
    recipe_dir = Path(recipe_dir)
    pkg_file = recipe_dir / "packages"
    packages = parse_packages(pkg_file)
    units = parse_units(recipe_dir / "units")
    inputs = key_inputs(recipe_dir, release, variant, ks_run)
    key = _digest(inputs)
    parent = Path(cache_dir or cache.cache_root()) / "debian"
    entry = parent / f"rootfs-{key}"
    if (entry / "meta.json").is_file():
        touch(entry)
        return entry / "tree"
    mmdebstrap = _require("mmdebstrap", "mmdebstrap")
    if os.geteuid() != 0:
        raise CouldNotTest("building the Debian root filesystem needs root (file ownership, chroot)")
    with cache.locked(entry) as lock_fd:
        if (entry / "meta.json").is_file():  # another kstress built it while we waited
            return entry / "tree"
        _clean_stale(parent)
        t0 = time.monotonic()
        log.info(f"debian rootfs {key}: building {release}/{variant} with {len(packages)} packages (a few minutes)")
        tmp = cache.make_tmp_dir(parent, f"rootfs-{key}-")
        try:
            argv = [mmdebstrap, "--mode=root", f"--variant={variant}", "--include=" + ",".join(packages),
                    *_apt_proxy_opts(), release, str(tmp / "tree")] + ([mirror] if mirror else [])
            rc = _run_progress(argv, tmp / "mmdebstrap.log", f"debian rootfs {key}", lock_fd)
            if rc:
                out = (tmp / "mmdebstrap.log").read_text(errors="replace")
                failed = parent / "failed" / f"rootfs-{key}.log"
                failed.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(tmp / "mmdebstrap.log", failed)
                err = classify_failure(out, packages, pkg_file, parent, "debian rootfs")
                if err:
                    raise err
                last = [x for x in out.splitlines() if x.startswith("E: ")][:1] or out.strip().splitlines()[-1:]
                raise CouldNotTest(f"mmdebstrap failed (exit {rc}): {' '.join(last)} (log: {failed})")
            tree = tmp / "tree"
            _install_overlay(recipe_dir, tree, ks_run)
            _systemctl(tree, units)
            if not (tree / HOST_KEY).is_file():
                raise CouldNotTest(f"the Debian rootfs has no /{HOST_KEY}: is openssh-server in {pkg_file}?")
            build_s = round(time.monotonic() - t0, 1)
            cache.atomic_write_json(tmp / "meta.json", {
                "key": key, "key_inputs": inputs, "mirror": mirror or "mmdebstrap's default",
                "build_s": build_s, "packages": _dpkg_versions(tree)})
            os.chmod(tmp, 0o755)
            cache.publish_dir(tmp, entry)
        except OSError as exc:
            raise _no_space(exc, parent) or exc from None
        finally:
            if tmp.exists():
                _remove(tmp)
        log.info(f"debian rootfs {key}: built in {build_s:.0f}s")
    return entry / "tree"


# ---------------------------------------------------------------- the disk image

def _binaries_digest(binaries: dict[str, Path]) -> tuple[dict[str, bytes], str]:
    """The workloads' contents, checked as the initramfs checks them, and their hash."""
    data = {}
    for name, path in sorted(binaries.items()):
        if not NAME_RE.fullmatch(name):
            raise UsageError(f"workload name {name!r} is not a plain file name")
        try:
            data[name] = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"workload binary {name}: cannot read {path}: {exc.strerror}") from None
        if not is_static_elf(data[name]):
            raise UsageError(f"workload binary {name} ({path}) is not a statically linked x86_64 ELF")
    return data, _digest({n: hashlib.sha256(d).hexdigest() for n, d in data.items()})


def _tree_bytes(tree: Path) -> int:
    out = subprocess.run(["du", "-sx", "--block-size=1", str(tree)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def build_image(binaries: dict[str, Path], cache_dir: Path | None = None, **rootfs_opts) -> DebianImage:
    """A raw ext4 image: the cached rootfs plus ``binaries`` in /usr/bin (a workload wins over a
    file of the same name). ``rootfs_opts`` go to build_rootfs."""
    data, bin_key = _binaries_digest(binaries)
    tree = build_rootfs(cache_dir, **rootfs_opts)
    rkey = tree.parent.name.removeprefix("rootfs-")
    key = _digest({"schema": KEY_SCHEMA, "rootfs": rkey, "binaries": bin_key, "free": FREE_SPACE})
    parent = tree.parent.parent
    entry = parent / f"image-{key}"
    if (entry / "meta.json").is_file():
        return _image(entry, True)
    mkfs = _require("mkfs.ext4", "e2fsprogs")
    with cache.locked(entry):
        if (entry / "meta.json").is_file():
            return _image(entry, True)
        _clean_stale(parent)
        t0 = time.monotonic()
        tmp = cache.make_tmp_dir(parent, f"image-{key}-")
        try:
            stage, disk = tmp / "stage", tmp / "disk.img"
            # Hard links: instant and no space. mkfs only reads them; a workload replaces its link.
            subprocess.run(["cp", "-al", str(tree), str(stage)], check=True, capture_output=True)
            for name, blob in data.items():
                dst = stage / WORKLOAD_DIR / name
                if dst.is_symlink() or dst.exists():
                    dst.unlink()  # never write through a link into the cached rootfs
                dst.write_bytes(blob)
                os.chmod(dst, 0o755)
            size = _tree_bytes(stage) * 11 // 10 + (64 << 20) + FREE_SPACE  # + metadata, journal, room
            size = -(-size // (1 << 20)) << 20
            with open(disk, "wb") as f:
                f.truncate(size)
            fs_uuid = str(uuid.UUID(hashlib.sha256(key.encode()).hexdigest()[:32]))
            r = subprocess.run([mkfs, "-q", "-F", "-L", "kstress-root", "-U", fs_uuid, "-E", "root_owner=0:0",
                                "-d", str(stage), str(disk)], capture_output=True, text=True)
            if r.returncode:
                err = classify_failure(r.stdout + r.stderr, {}, Path(), parent, "debian image")
                raise err or CouldNotTest(f"mkfs.ext4 failed: {' '.join((r.stderr or r.stdout).split())[:300]}")
            shutil.rmtree(stage)
            os.chmod(disk, 0o444)  # runs boot an overlay; nothing writes the cached image
            host_key = (tree / HOST_KEY).read_text().strip()
            cache.atomic_write_json(tmp / "meta.json", {
                "key": key, "rootfs": rkey, "binaries": sorted(data), "size": size,
                "ssh_host_key": host_key, "build_s": round(time.monotonic() - t0, 1)})
            os.chmod(tmp, 0o755)  # so that any user's QEMU can read the backing file
            cache.publish_dir(tmp, entry)
        except subprocess.CalledProcessError as exc:
            err = classify_failure(exc.stderr.decode(errors="replace"), {}, Path(), parent, "debian image")
            raise err or CouldNotTest(f"staging the Debian image failed: {exc.stderr.decode().strip()[:300]}") from None
        except OSError as exc:
            raise _no_space(exc, parent) or exc from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        log.info(f"debian image {key}: built in {time.monotonic() - t0:.0f}s ({size >> 20} MiB, "
                 f"{len(data)} workload(s))")
    return _image(entry, False)


def _image(entry: Path, hit: bool) -> DebianImage:
    touch(entry)  # the LRU order of `kstress cache prune`
    meta = json.loads((entry / "meta.json").read_text())
    if hit:
        log.info(f"debian image: cached {entry.name}")
    return DebianImage(path=entry / "disk.img", key=meta["key"], ssh_host_key=meta["ssh_host_key"],
                       cache_hit=hit)


def make_overlay(image: Path, dest: Path) -> Path:
    """A qcow2 file backed by ``image``: the run writes there, never to the cached image."""
    qemu_img = _require("qemu-img", "qemu-utils")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-b", str(Path(image).resolve()), "-F", "raw",
                        str(dest)], capture_output=True, text=True)
    if r.returncode:
        err = " ".join((r.stderr or r.stdout).split())
        raise CouldNotTest(f"qemu-img could not create the overlay {dest}: {err}")
    return dest
