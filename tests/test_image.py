"""The initramfs: archive format, contents, static checks and the cache."""

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import CouldNotTest, UsageError
from harness.guest.images import initramfs as image

BUSYBOX = Path("/bin/busybox")
needs_busybox = pytest.mark.skipif(not BUSYBOX.exists(), reason="needs Debian's busybox-static at /bin/busybox")


def read_newc(data: bytes) -> dict:
    """Our own reader of the archive, independent of cpio_newc's code."""
    entries, off = {}, 0
    while True:
        assert data[off:off + 6] == b"070701", f"bad magic at {off}"
        f = [int(data[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name = data[off + 110: off + 110 + namesize - 1].decode()
        off = (off + 110 + namesize + 3) & ~3
        body = data[off: off + size]
        off = (off + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, body, (rmaj, rmin))


def test_newc_roundtrip_and_padding():
    ents = [image.Entry("a", 0o040755), image.Entry("a/b", 0o100644, b"xyz"),
            image.Entry("a/l", 0o120777, b"/bin/busybox"), image.Entry("dev/console", 0o020600, rdev=(5, 1))]
    data = image.cpio_newc(ents)
    assert len(data) % 4 == 0
    got = read_newc(data)
    assert got["a/b"] == (0o100644, b"xyz", (0, 0))
    assert got["a/l"][1] == b"/bin/busybox"
    assert got["dev/console"][2] == (5, 1)
    assert image.cpio_newc(ents) == data  # reproducible


@pytest.mark.skipif(not shutil.which("cpio"), reason="needs cpio(1)")
def test_gnu_cpio_reads_our_archive(tmp_path):
    data = image.cpio_newc([image.Entry("d", 0o040755), image.Entry("d/f", 0o100755, b"hi\n")])
    out = subprocess.run(["cpio", "-it"], input=data, capture_output=True, check=True).stdout.decode()
    assert out.split() == ["d", "d/f"]


def test_static_elf_detection():
    assert not image.is_static_elf(b"#!/bin/sh\n")
    assert not image.is_static_elf(Path(sys.executable).resolve().read_bytes())  # dynamically linked
    if BUSYBOX.exists():
        assert image.is_static_elf(BUSYBOX.read_bytes())


def test_recipe_init_is_sane():
    init = (image.RECIPE_DIR / "init").read_text()
    for must in ("mount -t proc", "mount -t sysfs", "mount -t devtmpfs", "/sys/kernel/debug",
                 "kstress-init: ready", "stty", "-echo", "cttyhack"):
        assert must in init, must
    assert init.startswith("#!/bin/sh\n")
    # Nothing the init prints may look like a kernel line.
    assert "[" not in "".join(ln for ln in init.splitlines() if ln.strip().startswith("echo"))


@needs_busybox
def test_build_contents_and_cache(tmp_path):
    wl = tmp_path / "fake-workload"
    shutil.copy(BUSYBOX, wl)  # any static ELF will do
    p1 = image.build_initramfs({"migrate_fork": wl}, tmp_path / "cache")
    assert p1.is_file() and p1.name.endswith(".cpio.gz") and p1.parent == tmp_path / "cache" / "initramfs"
    ents = read_newc(gzip.decompress(p1.read_bytes()))
    assert ents["init"][1] == (image.RECIPE_DIR / "init").read_bytes()
    assert ents["init"][0] == 0o100755
    assert ents[image.KS_RUN][0] == 0o100755
    assert ents["usr/bin/migrate_fork"][1] == wl.read_bytes()
    assert ents["bin/busybox"][1] == BUSYBOX.read_bytes()
    assert ents["bin/sh"] == (0o120777, b"/bin/busybox", (0, 0))
    assert ents["dev/console"][2] == (5, 1)
    for d in ("proc", "sys", "dev", "tmp"):
        assert ents[d][0] & 0o170000 == 0o040000

    inode = p1.stat().st_ino  # an atomic rewrite would give a new inode
    os.utime(p1, (1, 1))
    assert image.build_initramfs({"migrate_fork": wl}, tmp_path / "cache") == p1  # hit
    assert p1.stat().st_ino == inode
    assert p1.stat().st_mtime > 1  # marked used now: the LRU order of `kstress cache prune`
    wl.write_bytes(wl.read_bytes() + b"\0")  # any change of content: a new entry
    p2 = image.build_initramfs({"migrate_fork": wl}, tmp_path / "cache")
    assert p2 != p1 and p1.is_file()
    assert image.build_initramfs({}, tmp_path / "cache") not in (p1, p2)
    assert not [p for p in (tmp_path / "cache" / "initramfs").iterdir() if p.name.startswith(".tmp-")]


@needs_busybox
def test_bad_binaries_are_refused(tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(UsageError, match="statically linked"):
        image.build_initramfs({"w": script}, tmp_path)
    with pytest.raises(UsageError, match="cannot read"):
        image.build_initramfs({"w": tmp_path / "missing"}, tmp_path)
    with pytest.raises(UsageError, match="plain file name"):
        image.build_initramfs({"../w": BUSYBOX}, tmp_path)


def test_missing_busybox_says_what_to_install(tmp_path):
    with pytest.raises(CouldNotTest, match="busybox-static"):
        image.initramfs_entries({}, busybox=tmp_path / "busybox")
