"""The Debian image: recipe parsing, cache keys, overlay sanity, the image
stage on a fake rootfs (fast, no network), and the real mmdebstrap build
(e2e: needs root, mmdebstrap and Debian's package registry)."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import CouldNotTest, UsageError
from harness.guest.channels import serial
from harness.guest.images import debian
from harness.guest.machine import READY_MARKER

BUSYBOX = Path("/bin/busybox")  # any static ELF will do as a workload
OVERLAY = debian.RECIPE_DIR / "overlay"
PRINTK = re.compile(r"\[\s*\d+\.\d+\]")

needs_e2fsprogs = pytest.mark.skipif(not (shutil.which("mkfs.ext4") and shutil.which("debugfs")),
                                     reason="needs mkfs.ext4 and debugfs (Debian package e2fsprogs)")
needs_busybox = pytest.mark.skipif(not BUSYBOX.exists(), reason="needs Debian's busybox-static at /bin/busybox")


def ext4_cat(img: Path, path: str) -> bytes:
    """A file of an ext4 image, read by e2fsprogs' debugfs (no mount)."""
    r = subprocess.run(["debugfs", "-R", f"cat {path}", str(img)], capture_output=True, check=True)
    return r.stdout


def ext4_stat(img: Path, path: str) -> str:
    """debugfs's stat output ("" if the path is not in the image)."""
    r = subprocess.run(["debugfs", "-R", f"stat {path}", str(img)], capture_output=True, text=True)
    return r.stdout


def ext4_mode(img: Path, path: str) -> int:
    """Permission bits (debugfs shows no file type there)."""
    m = re.search(r"Mode:\s+(\d+)", ext4_stat(img, path))
    assert m, f"{path} not in {img}"
    return int(m[1], 8)


def copy_recipe(tmp_path: Path) -> tuple[Path, Path]:
    recipe = tmp_path / "recipe"
    shutil.copytree(debian.RECIPE_DIR, recipe, symlinks=True)
    ks_run = tmp_path / "ks-run"
    shutil.copy2(debian.KS_RUN_SRC, ks_run)
    return recipe, ks_run


# ---------------------------------------------------------------- the recipe as data

def test_packages_file_parser(tmp_path):
    f = tmp_path / "packages"
    f.write_text("# a comment\n\npython3   # trailing comment\n  procps\npython3\n")
    assert debian.parse_packages(f) == {"python3": 3, "procps": 4}
    f.write_text("python3\nPy thon\n")
    with pytest.raises(UsageError, match=re.escape(f"{f}:2: 'Py thon' is not a Debian package name")):
        debian.parse_packages(f)
    f.write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="no packages"):
        debian.parse_packages(f)
    with pytest.raises(UsageError, match="cannot read"):
        debian.parse_packages(tmp_path / "missing")


def test_units_file_parser(tmp_path):
    f = tmp_path / "units"
    f.write_text("# c\nenable a.service\nmask  serial-getty@ttyS0.service  # why\n")
    assert debian.parse_units(f) == [("enable", "a.service"), ("mask", "serial-getty@ttyS0.service")]
    f.write_text("enable a.service\nstart b.service\n")
    with pytest.raises(UsageError, match=re.escape(f"{f}:2:")):
        debian.parse_units(f)


def test_shipped_recipe_has_the_required_packages():
    pkgs = debian.parse_packages(debian.RECIPE_DIR / "packages")
    for p in ("systemd-sysv", "udev", "python3", "openssh-server", "procps", "stress-ng", "numactl",
              "util-linux", "iproute2"):
        assert p in pkgs
    assert (debian.RELEASE, debian.VARIANT) == ("bookworm", "minbase")


def test_key_changes_with_each_recipe_input_and_not_otherwise(tmp_path):
    recipe, ks_run = copy_recipe(tmp_path)

    def key(**kw):
        return debian.rootfs_key(recipe, ks_run=ks_run, **kw)

    base = key()
    assert base == debian.rootfs_key()  # the copy is the shipped recipe
    assert len(base) == 24 and re.fullmatch(r"[0-9a-f]+", base)

    # Not inputs: comments, blank lines, package order, mtimes, non-exec mode bits, the README.
    pk = recipe / "packages"
    lines = [ln for ln in pk.read_text().splitlines() if ln and not ln.startswith("#")]
    pk.write_text("# reordered\n\n" + "\n".join(reversed(lines)) + "\n")
    conf = OVERLAY.relative_to(debian.RECIPE_DIR) / "etc/ssh/sshd_config.d/kstress.conf"
    os.utime(recipe / conf, (0, 0))
    os.chmod(recipe / conf, 0o600)
    (recipe / "README.md").write_text("changed\n")
    assert key() == base

    changes = {
        "package added": lambda: pk.write_text(pk.read_text() + "less\n"),
        "unit line": lambda: (recipe / "units").write_text((recipe / "units").read_text() + "mask x.timer\n"),
        "overlay content": lambda: (recipe / conf).write_text((recipe / conf).read_text() + "X11Forwarding no\n"),
        "overlay exec bit": lambda: os.chmod(recipe / conf, 0o755),
        "overlay new file": lambda: (recipe / "overlay/etc/motd").write_text(""),
        "overlay new dir": lambda: (recipe / "overlay/srv").mkdir(),
        "overlay symlink": lambda: (recipe / "overlay/etc/kstress-link").symlink_to("/dev/null"),
        "ks-run": lambda: ks_run.write_text(ks_run.read_text() + "# changed\n"),
    }
    seen = {base}
    for what, change in changes.items():
        change()
        k = key()
        assert k not in seen, what
        seen.add(k)
    assert key(release="trixie") not in seen
    assert key(variant="apt") not in seen


def test_known_failures_are_one_clear_line(tmp_path):
    pkgs = {"python3": 7, "kstress-no-such-package": 9}
    pf = Path("images/debian/packages")
    missing = ("Building dependency tree...\nE: Unable to locate package kstress-no-such-package\n"
               "E: setup failed: E: apt-get ... --yes install python3 kstress-no-such-package failed\n")
    err = debian.classify_failure(missing, pkgs, pf, tmp_path, "debian rootfs")
    assert isinstance(err, UsageError) and err.exit_code == 2
    assert str(err) == f"Debian package(s) not found in bookworm: kstress-no-such-package ({pf}:9)"

    unreachable = ("Err:1 http://127.0.0.1:9/debian bookworm InRelease\n"
                   "  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)\n"
                   "E: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  Could not connect to "
                   "127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)\n")
    err = debian.classify_failure(unreachable, pkgs, pf, tmp_path, "debian rootfs")
    assert isinstance(err, CouldNotTest) and err.exit_code == 125
    assert "registry is unreachable" in str(err) and "127.0.0.1:9" in str(err) and "\n" not in str(err)
    dns = "W: Failed to fetch http://mirror.invalid/debian/dists/bookworm/InRelease  " \
          "Temporary failure resolving 'mirror.invalid'\n"
    assert "unreachable" in str(debian.classify_failure(dns, pkgs, pf, tmp_path, "debian rootfs"))

    full = "dpkg: error processing archive x.deb (--unpack):\n cannot copy extracted data: No space left on device\n"
    err = debian.classify_failure(full, pkgs, pf, tmp_path, "debian rootfs")
    assert isinstance(err, CouldNotTest) and str(tmp_path) in str(err) and "disk full" in str(err)
    assert debian.classify_failure("E: something else\n", pkgs, pf, tmp_path, "debian rootfs") is None


def test_missing_mmdebstrap_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CouldNotTest, match="mmdebstrap not found: install Debian's mmdebstrap"):
        debian.build_rootfs(tmp_path / "cache")


# ---------------------------------------------------------------- the overlay

def test_sshd_allows_root_by_key_only():
    conf = (OVERLAY / "etc/ssh/sshd_config.d/kstress.conf").read_text()
    opts = {}
    for line in conf.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, v = line.split(None, 1)
            opts.setdefault(k.lower(), v.strip())  # sshd: the first value wins
    assert opts["permitrootlogin"] == "prohibit-password"
    assert opts["passwordauthentication"] == "no"
    assert opts["kbdinteractiveauthentication"] == "no"
    assert opts["permitemptypasswords"] == "no"
    assert opts["authenticationmethods"] == "publickey"
    assert opts["usedns"] == "no"


def test_no_secret_in_the_recipe():
    for p in debian.RECIPE_DIR.rglob("*"):
        if p.is_file():
            text = p.read_text(errors="replace")
            assert "PRIVATE KEY" not in text and not re.search(r"ssh-(ed25519|rsa) AAAA", text), p
            assert not re.search(r"^root:[^*!:]", text, re.M), p  # no password hash for root
            assert not re.search(r"chpasswd|passwd root", text), p


def unit_sections(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd unit file -> {section: {key: [values]}} (values in order, "" resets kept)."""
    out: dict[str, dict[str, list[str]]] = {}
    sec = None
    for line in path.read_text().splitlines():
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        if s.startswith("["):
            sec = out.setdefault(s.strip("[]"), {})
            continue
        k, v = s.split("=", 1)
        sec.setdefault(k.strip(), []).append(v.strip())
    return out


def test_units_are_well_formed_and_reference_what_exists():
    units_dir = OVERLAY / "etc/systemd/system"
    for f in list(units_dir.rglob("*.service")) + list(units_dir.rglob("*.conf")):
        secs = unit_sections(f)
        assert set(secs) <= {"Unit", "Service", "Install"}, f
        for cmd in secs.get("Service", {}).get("ExecStart", []):
            if not cmd:
                continue  # "ExecStart=" resets the packaged command
            argv = cmd.lstrip("-").split()
            exe = argv[1] if argv[0] == "/bin/sh" and not argv[1].startswith("-") else argv[0]
            if exe.startswith("/usr/libexec/kstress/"):
                assert (OVERLAY / exe.lstrip("/")).is_file(), f"{f}: {exe} is not in the overlay"
    enabled = [u for a, u in debian.parse_units(debian.RECIPE_DIR / "units")]
    for u in enabled:
        if u.startswith("kstress-"):
            assert (units_dir / u).is_file(), u
    assert ("mask", "serial-getty@ttyS0.service") in debian.parse_units(debian.RECIPE_DIR / "units")
    assert ("enable", "serial-getty@ttyS1.service") in debian.parse_units(debian.RECIPE_DIR / "units")
    assert ("enable", "systemd-networkd.service") in debian.parse_units(debian.RECIPE_DIR / "units")


def test_authorized_keys_unit_reads_fw_cfg_before_sshd():
    unit = unit_sections(OVERLAY / "etc/systemd/system/kstress-authorized-keys.service")
    assert "ssh.service" in unit["Unit"]["Before"][0]
    script = (OVERLAY / "usr/libexec/kstress/install-authorized-keys").read_text()
    assert "/sys/firmware/qemu_fw_cfg/by_name/opt/kstress/authorized_keys/raw" in script
    assert unit["Unit"]["ConditionPathExists"] == ["/sys/firmware/qemu_fw_cfg/by_name/opt/kstress/authorized_keys/raw"]
    assert "chmod 0700 /root/.ssh" in script and "chmod 0600" in script
    subprocess.run(["sh", "-n", str(OVERLAY / "usr/libexec/kstress/install-authorized-keys")], check=True)


def test_ready_unit_prints_exactly_the_marker_after_sshd():
    unit = unit_sections(OVERLAY / "etc/systemd/system/kstress-ready.service")
    assert "ssh.service" in unit["Unit"]["After"][0].split()
    (cmd,) = unit["Service"]["ExecStart"]
    m = re.fullmatch(r"""/bin/sh -c 'echo "([^"]*)" >/dev/ttyS0'""", cmd)
    assert m and m[1].encode() == READY_MARKER
    assert not PRINTK.search(m[1])


def test_ttys1_autologin_and_tmp_ks():
    getty = unit_sections(OVERLAY / "etc/systemd/system/serial-getty@ttyS1.service.d/autologin.conf")
    assert getty["Service"]["ExecStart"][0] == ""  # reset, then ours
    assert "--autologin root" in getty["Service"]["ExecStart"][1]
    tmpfiles = (OVERLAY / "etc/tmpfiles.d/kstress.conf").read_text()
    assert re.search(rf"^d {re.escape(serial.WORK_DIR)} ", tmpfiles, re.M)
    journald = unit_sections(OVERLAY / "etc/systemd/journald.conf.d/kstress.conf")
    assert journald["Journal"]["Storage"] == ["volatile"]
    network = unit_sections(OVERLAY / "etc/systemd/network/10-kstress.network")
    assert network["Network"]["DHCP"] == ["ipv4"]
    subprocess.run(["sh", "-n", str(OVERLAY / "etc/profile.d/kstress.sh")], check=True)


def test_kernel_args():
    args = debian.KERNEL_ARGS.split()
    assert "root=/dev/vda" in args and "rw" in args and "systemd.show_status=false" in args
    assert not [a for a in args if a.startswith(("console=", "loglevel="))]  # the harness's business


# ---------------------------------------------------------------- the image stage, on a fake rootfs

def fake_rootfs(cache: Path) -> Path:
    """A published rootfs entry under the shipped recipe's key, as build_rootfs would leave it."""
    entry = cache / "debian" / f"rootfs-{debian.rootfs_key()}"
    tree = entry / "tree"
    (tree / "etc/ssh").mkdir(parents=True)
    (tree / "usr/bin").mkdir(parents=True)
    (tree / debian.HOST_KEY).write_text("ssh-ed25519 AAAAfake root@build\n")
    (tree / "usr/bin/stress-ng").write_bytes(b"the packaged one\n")
    (entry / "meta.json").write_text("{}")
    return tree


@needs_e2fsprogs
@needs_busybox
def test_image_from_a_cached_rootfs(tmp_path):
    cache = tmp_path / "cache"
    tree = fake_rootfs(cache)
    im = debian.build_image({"stress-ng": BUSYBOX, "kstress-probe": BUSYBOX}, cache)
    assert not im.cache_hit and im.path.is_file() and im.path.name == "disk.img"
    assert im.ssh_host_key == "ssh-ed25519 AAAAfake root@build"
    assert im.kernel_args == debian.KERNEL_ARGS
    assert ext4_cat(im.path, "/usr/bin/kstress-probe") == BUSYBOX.read_bytes()
    assert ext4_cat(im.path, "/usr/bin/stress-ng") == BUSYBOX.read_bytes()  # a workload wins
    assert ext4_mode(im.path, "/usr/bin/kstress-probe") == 0o755
    assert (tree / "usr/bin/stress-ng").read_bytes() == b"the packaged one\n"  # the cache is untouched
    free = re.search(r"Free blocks:\s+(\d+)", subprocess.run(
        ["debugfs", "-R", "stats", str(im.path)], capture_output=True, text=True).stdout)
    assert int(free[1]) * 4096 >= debian.FREE_SPACE
    parent = cache / "debian"
    assert not [p for p in parent.iterdir() if p.name.startswith(".tmp-")]
    meta = json.loads((im.path.parent / "meta.json").read_text())
    assert meta["binaries"] == ["kstress-probe", "stress-ng"]

    again = debian.build_image({"kstress-probe": BUSYBOX, "stress-ng": BUSYBOX}, cache)
    assert again.cache_hit and again.path == im.path and again.key == im.key
    other = debian.build_image({"kstress-probe": BUSYBOX}, cache)
    assert other.key != im.key and im.path.is_file()


def test_bad_workloads_are_refused_before_any_build(tmp_path):
    text = tmp_path / "text"
    text.write_text("echo no interpreter line\n")
    with pytest.raises(UsageError, match="neither a statically linked x86_64 ELF nor a #! script"):
        debian.build_image({"w": text}, tmp_path)
    with pytest.raises(UsageError, match="cannot read"):
        debian.build_image({"w": tmp_path / "missing"}, tmp_path)
    with pytest.raises(UsageError, match="plain file name"):
        debian.build_image({"../w": BUSYBOX}, tmp_path)
    assert not (tmp_path / "debian").exists()


def test_a_script_needs_its_interpreter_in_the_image(tmp_path):
    tree = tmp_path / "tree"
    (tree / "usr" / "bin").mkdir(parents=True)
    (tree / "usr" / "bin" / "python3").symlink_to("python3.11")  # as Debian's: a relative link
    debian._check_interpreters({"ok": b"#!/usr/bin/python3\nprint(1)\n", "elf": b"\x7fELF..."}, tree)
    assert debian.script_interpreter(b"#! /usr/bin/env  python3 -u\n") == "/usr/bin/env"
    with pytest.raises(UsageError, match=r"workload perl_w: its interpreter /usr/bin/perl is not in the Debian image"):
        debian._check_interpreters({"perl_w": b"#!/usr/bin/perl\n"}, tree)


@pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs qemu-img (Debian package qemu-utils)")
def test_overlay_is_backed_by_the_image_and_leaves_it_alone(tmp_path):
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    before = img.stat().st_mtime_ns
    ov = debian.make_overlay(img, tmp_path / "run" / "overlay.qcow2")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(ov)], capture_output=True,
                                     check=True).stdout)
    assert info["format"] == "qcow2" and info["backing-filename"] == str(img)
    assert info["backing-filename-format"] == "raw" and info["virtual-size"] == 16 << 20
    assert img.stat().st_mtime_ns == before
    with pytest.raises(CouldNotTest, match="qemu-img could not create the overlay"):
        debian.make_overlay(tmp_path / "missing.img", tmp_path / "x" / "overlay.qcow2")


# ---------------------------------------------------------------- e2e: the real build

def _e2e_prereqs():
    if os.geteuid() != 0:
        pytest.skip("building the Debian rootfs needs root")
    for tool, pkg in (("mmdebstrap", "mmdebstrap"), ("mkfs.ext4", "e2fsprogs"), ("debugfs", "e2fsprogs")):
        if not shutil.which(tool):
            pytest.skip(f"needs {tool} (Debian package {pkg})")
    if not BUSYBOX.exists():
        pytest.skip("needs Debian's busybox-static at /bin/busybox")


@pytest.fixture(scope="module")
def real_image(tmp_path_factory):
    _e2e_prereqs()
    cache = tmp_path_factory.mktemp("debian-cache")
    return cache, debian.build_image({"kstress-probe": BUSYBOX}, cache)


@pytest.mark.e2e
def test_real_image_contents(real_image):
    cache, im = real_image
    img = im.path
    conf = ext4_cat(img, "/etc/ssh/sshd_config.d/kstress.conf")
    assert conf == (OVERLAY / "etc/ssh/sshd_config.d/kstress.conf").read_bytes()
    assert ext4_mode(img, "/etc/ssh/sshd_config.d/kstress.conf") == 0o644
    assert ext4_cat(img, "/" + debian.KS_RUN) == debian.KS_RUN_SRC.read_bytes()
    assert ext4_mode(img, "/" + debian.KS_RUN) == 0o755
    assert ext4_mode(img, "/usr/libexec/kstress/install-authorized-keys") == 0o755
    assert ext4_cat(img, "/usr/bin/kstress-probe") == BUSYBOX.read_bytes()
    assert ext4_mode(img, "/usr/bin/kstress-probe") == 0o755
    for tool in ("/usr/bin/python3", "/usr/bin/stress-ng", "/usr/bin/numactl", "/usr/sbin/swapon",
                 "/usr/sbin/sshd", "/usr/lib/systemd/systemd-udevd", "/usr/bin/ip"):
        assert ext4_stat(img, tool), tool
    assert ext4_mode(img, "/etc/ssh/ssh_host_ed25519_key") == 0o600
    assert ext4_cat(img, "/etc/ssh/ssh_host_ed25519_key.pub").decode().strip() == im.ssh_host_key
    assert "Fast link dest: \"/dev/null\"" in ext4_stat(img, "/etc/systemd/system/serial-getty@ttyS0.service")
    assert ext4_stat(img, "/etc/systemd/system/getty.target.wants/serial-getty@ttyS1.service")
    assert ext4_stat(img, "/etc/systemd/system/multi-user.target.wants/kstress-ready.service")
    assert ext4_stat(img, "/etc/systemd/system/ssh.service.wants/kstress-authorized-keys.service")
    assert ext4_stat(img, "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
    assert not ext4_stat(img, "/root/.ssh/authorized_keys")  # the key comes per run, from fw_cfg
    shadow = ext4_cat(img, "/etc/shadow").decode()
    assert re.search(r"^root:[*!][^:]*:", shadow, re.M)  # no password
    root = ext4_stat(img, "/")
    assert "User:     0" in root and re.search(r"Mode:\s+0755", root)
    meta = json.loads((cache / "debian" / f"rootfs-{debian.rootfs_key()}" / "meta.json").read_text())
    assert "stress-ng" in meta["packages"] and meta["key"] == debian.rootfs_key()


@pytest.mark.e2e
def test_real_image_second_call_is_a_cache_hit(real_image):
    cache, im = real_image
    again = debian.build_image({"kstress-probe": BUSYBOX}, cache)
    assert again.cache_hit and again.path == im.path and again.ssh_host_key == im.ssh_host_key


@pytest.mark.e2e
def test_nonexistent_package_is_named(tmp_path):
    _e2e_prereqs()
    recipe, ks_run = copy_recipe(tmp_path)
    pk = recipe / "packages"
    pk.write_text(pk.read_text() + "kstress-no-such-package\n")
    line = len(pk.read_text().splitlines())
    with pytest.raises(UsageError) as exc:
        debian.build_rootfs(tmp_path / "cache", recipe_dir=recipe, ks_run=ks_run)
    msg = str(exc.value)
    assert "\n" not in msg and f"kstress-no-such-package ({pk}:{line})" in msg
    parent = tmp_path / "cache" / "debian"
    assert not [p for p in parent.iterdir() if p.is_dir() and p.name.startswith(("rootfs-", ".tmp-"))]


@pytest.mark.e2e
def test_unreachable_registry_could_not_test(tmp_path):
    _e2e_prereqs()
    with pytest.raises(CouldNotTest) as exc:
        debian.build_rootfs(tmp_path / "cache", mirror="http://127.0.0.1:9/debian")
    msg = str(exc.value)
    assert "\n" not in msg and "registry is unreachable" in msg and "127.0.0.1:9" in msg
    parent = tmp_path / "cache" / "debian"
    assert not [p for p in parent.iterdir() if p.is_dir() and p.name.startswith(("rootfs-", ".tmp-"))]
