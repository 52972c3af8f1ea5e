"""`kstress doctor` names the Debian package for whatever is missing."""

import shutil

from harness import doctor


def test_missing_tools_name_their_packages(monkeypatch, capsys, tmp_path):
    real_which = shutil.which
    monkeypatch.setattr(doctor.shutil, "which",
                        lambda name: None if name in ("flex", "qemu-system-x86_64") else real_which(name))
    monkeypatch.setattr(doctor, "_file",
                        lambda name, path, package: doctor.Check(name, False, f"{path} missing", package))
    code = doctor.doctor(tmp_path)
    out = capsys.readouterr().out
    assert code == 125
    assert "[MISS] flex" in out and "(apt-get install flex)" in out
    assert "qemu-system-x86" in out.split("to fix:")[1]
    assert "linux-source-6.12" in out.split("to fix:")[1]


def test_kvm_is_a_warning_not_a_requirement(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "resolve_accel",
                        lambda requested, cache: ("tcg", "KVM does not work here: x; falling back to TCG"))
    check = doctor._kvm(tmp_path)
    assert not check.ok and not check.required and check.detail.startswith("KVM does not work here: x")
