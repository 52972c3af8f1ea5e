"""Accelerator resolution: the probe image, its cache, and both branches for real."""

import shutil
import time

import pytest

from harness.errors import CouldNotTest, UsageError
from harness.guest import accel

needs_qemu = pytest.mark.skipif(not shutil.which(accel.QEMU), reason=f"needs {accel.QEMU}")


def test_probe_image_bytes():
    img = accel.probe_image()
    assert len(img) == 512 and img[510:] == b"\x55\xaa"
    assert img.startswith(b"\xba\xf8\x03")  # mov dx, 0x3f8 (COM1)
    assert b"\xb0K\xee\xb0S\xee\xb0\n\xee" in img  # mov al,c ; out dx,al for "KS\n"
    assert b"\xf4" in img  # and it halts
    with pytest.raises(ValueError):
        accel.probe_image(b"x" * 200)


def test_probe_argv_uses_the_guests_cpu_model(tmp_path):
    kvm = accel.probe_argv(tmp_path / "p.img", "kvm")
    tcg = accel.probe_argv(tmp_path / "p.img", "tcg")
    assert kvm[kvm.index("-cpu") + 1] == "host" and tcg[tcg.index("-cpu") + 1] == "max"
    assert kvm[kvm.index("-accel") + 1] == "kvm"
    assert "-no-reboot" in kvm and "-nodefaults" in kvm


KEY = {"host_kernel": "6.1.0", "qemu": "QEMU emulator version 7.2.22", "kvm_dev": [2792, 5, 1]}


def test_probe_cache_roundtrip_and_expiry(tmp_path):
    assert accel.cached_probe(tmp_path, KEY) is None
    accel.store_probe(tmp_path, KEY, False, "printed nothing", 6.0)
    ent = accel.cached_probe(tmp_path, KEY)
    assert ent["kvm_works"] is False and ent["detail"] == "printed nothing"
    assert accel.cached_probe(tmp_path, dict(KEY, host_kernel="6.2.0")) is None  # another host kernel
    assert accel.cached_probe(tmp_path, dict(KEY, kvm_dev=[2792, 6, 1])) is None  # another /dev/kvm
    assert accel.cached_probe(tmp_path, KEY, now=time.time() + accel.CACHE_MAX_AGE + 1) is None
    files = list((tmp_path / "accel").iterdir())
    assert [f.suffix for f in files] == [".json"]  # written atomically: no temp file left


def test_corrupt_cache_is_ignored(tmp_path):
    accel.store_probe(tmp_path, KEY, True, "ok", 0.2)
    (f,) = (tmp_path / "accel").iterdir()
    f.write_text("{not json")
    assert accel.cached_probe(tmp_path, KEY) is None


@pytest.fixture
def fake_host(monkeypatch):
    """A host whose /dev/kvm opens and whose probe answers ``state['works']``."""
    state = {"works": False, "probes": 0, "problem": None}

    def probe(a="kvm", timeout=accel.PROBE_TIMEOUT, sector=None):
        state["probes"] += 1
        return state["works"], 0.1, "fake probe"
    monkeypatch.setattr(accel, "run_probe", probe)
    monkeypatch.setattr(accel, "probe_key", lambda dev=accel.KVM_DEV: KEY)
    monkeypatch.setattr(accel, "kvm_device_problem", lambda dev=accel.KVM_DEV: state["problem"])
    return state


def test_resolve_branches(fake_host, tmp_path):
    assert accel.resolve_accel("tcg", tmp_path) == ("tcg", None)
    assert fake_host["probes"] == 0
    got, warning = accel.resolve_accel("auto", tmp_path)
    assert got == "tcg" and "falling back to TCG" in warning and "\n" not in warning
    with pytest.raises(CouldNotTest, match="KVM does not work"):
        accel.resolve_accel("kvm", tmp_path)
    assert fake_host["probes"] == 1  # the second answer came from the cache
    with pytest.raises(UsageError):
        accel.resolve_accel("hvf", tmp_path)


def test_resolve_kvm_works(fake_host, tmp_path):
    fake_host["works"] = True
    assert accel.resolve_accel("auto", tmp_path) == ("kvm", None)
    assert accel.resolve_accel("kvm", tmp_path) == ("kvm", None)
    assert fake_host["probes"] == 1


def test_no_kvm_device_means_no_probe(fake_host, tmp_path):
    fake_host["problem"] = "/dev/kvm does not exist"
    got, warning = accel.resolve_accel("auto", tmp_path)
    assert got == "tcg" and "/dev/kvm does not exist" in warning
    with pytest.raises(CouldNotTest, match="/dev/kvm does not exist"):
        accel.resolve_accel("kvm", tmp_path)
    assert fake_host["probes"] == 0


def test_unopenable_device(tmp_path):
    dev = tmp_path / "kvm"
    assert "does not exist" in accel.kvm_device_problem(dev)
    dev.mkdir()  # opening a directory read-write fails like a device we may not use
    assert "cannot open" in accel.kvm_device_problem(dev)


# --- real QEMU --------------------------------------------------------------

@needs_qemu
def test_real_probe_tcg_prints_the_marker():
    ok, took, detail = accel.run_probe("tcg", timeout=10)
    assert ok, detail
    assert took < 5


@needs_qemu
def test_real_probe_of_a_silent_guest_times_out():
    # A real QEMU that never prints: the branch a hanging KVM takes.
    silent = accel.probe_image(b"")
    ok, took, detail = accel.run_probe("tcg", timeout=2, sector=silent)
    assert not ok and "printed nothing" in detail
    assert 1.9 < took < 4


@needs_qemu
def test_real_resolution_on_this_host(tmp_path):
    """Whatever this host is: KVM that works is used, KVM that does not is
    refused within the probe's time and ``auto`` falls back with one warning."""
    if accel.kvm_device_problem() is None:
        works, _, detail = accel.run_probe("kvm")
    else:
        works, detail = False, "no /dev/kvm"
    if works:
        assert accel.resolve_accel("kvm", tmp_path) == ("kvm", None)
        assert accel.resolve_accel("auto", tmp_path) == ("kvm", None)
        return
    t0 = time.monotonic()
    with pytest.raises(CouldNotTest, match="accel kvm: "):
        accel.resolve_accel("kvm", tmp_path)
    assert time.monotonic() - t0 < 10, detail
    got, warning = accel.resolve_accel("auto", tmp_path)
    assert got == "tcg" and warning.count("\n") == 0 and "TCG" in warning
