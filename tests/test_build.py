"""Fast tests of the build stage: keys, cache entries, locks, sources, messages."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from harness import cache
from harness.cli import main
from harness.errors import CouldNotTest, UsageError
from harness.kernel import build, source
from harness.kernel.build import BuildRequest, build_kernel, compute_key, error_summary
from harness.toolchain import toolchain_id

DATA = Path(__file__).parent / "data" / "patches"


def fake_tree(d: Path) -> Path:
    (d / "scripts" / "kconfig").mkdir(parents=True)
    (d / "Makefile").write_text("# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION = -rc1\nNAME = x\n")
    (d / "Kconfig").write_text("mainmenu x\n")
    (d / "scripts" / "kconfig" / "merge_config.sh").write_text("#!/bin/sh\n")
    (d / "mm").mkdir()
    (d / "mm" / "mmap.c").write_text("// SPDX-License-Identifier: GPL-2.0-only\n/*\n * mm/mmap.c\n *\n")
    return d


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "toolchain_id", lambda: "gcc (Debian 12.2.0-14) 12.2.0; GNU ld 2.40")
    tree = fake_tree(tmp_path / "linux")
    frag = tmp_path / "f.config"
    frag.write_text("CONFIG_X=y\n# a comment\n")
    base = tmp_path / "base.config"
    base.write_text("CONFIG_BASE=y\n")
    pdir = tmp_path / "p"
    pdir.mkdir()
    (pdir / "0001-a.patch").write_bytes((DATA / "a" / "0001-mm-mmap-comment-a.patch").read_bytes())
    req = BuildRequest(source=str(tree), patches=str(pdir), base_config=str(base), fragments=[str(frag)])
    return req, tmp_path / "cache", {"tree": tree / "mm" / "mmap.c", "frag": frag, "base": base,
                                     "patch": pdir / "0001-a.patch"}


def flip_last_byte(p: Path):
    data = bytearray(p.read_bytes())
    data[-2] ^= 0x01  # before the final newline, so the file stays well formed
    st = p.stat()
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only the bytes differ


@pytest.mark.parametrize("what", ["frag", "base", "patch"])
def test_one_byte_of_any_input_changes_the_key(inputs, what):
    req, root, files = inputs
    k0 = compute_key(req, root)
    assert compute_key(req, root) == k0
    flip_last_byte(files[what])
    assert compute_key(req, root) != k0


def test_directory_source_identity_follows_mtime_and_size(inputs):
    req, root, files = inputs
    k0 = compute_key(req, root)
    os.utime(files["tree"], ns=(1, 1))
    k1 = compute_key(req, root)
    assert k1 != k0
    files["tree"].write_text(files["tree"].read_text() + "x")
    os.utime(files["tree"], ns=(1, 1))
    assert compute_key(req, root) not in (k0, k1)


def test_compiler_binutils_and_schema_change_the_key(inputs, monkeypatch):
    req, root, _ = inputs
    k0 = compute_key(req, root)
    monkeypatch.setattr(build, "toolchain_id", lambda: "gcc (Debian 12.2.0-15) 12.2.0; GNU ld 2.40")
    k1 = compute_key(req, root)
    monkeypatch.setattr(build, "toolchain_id", lambda: "gcc (Debian 12.2.0-15) 12.2.0; GNU ld 2.41")
    k2 = compute_key(req, root)
    monkeypatch.setattr(build, "KEY_SCHEMA", build.KEY_SCHEMA + 1)
    assert len({k0, k1, k2, compute_key(req, root)}) == 4


def test_toolchain_id_names_compiler_assembler_and_linker():
    parts = toolchain_id().split("; ")
    assert len(parts) == 3 and "gcc" in parts[0] and "assembler" in parts[1] and " ld " in f" {parts[2]}"


def test_jobs_do_not_change_the_key(inputs):
    req, root, _ = inputs
    k0 = compute_key(req, root)
    req.jobs = 7
    assert compute_key(req, root) == k0


def test_tarball_identity_is_memoised(tmp_path, monkeypatch):
    tree = fake_tree(tmp_path / "linux-x")
    tb = tmp_path / "linux.tar.gz"
    with tarfile.open(tb, "w:gz") as t:
        t.add(tree, arcname="linux-x")
    memo = tmp_path / "memo.json"
    s1 = source.resolve(str(tb), memo_file=memo)
    assert s1.kind == "tarball" and s1.identity == cache.sha256_file(tb)
    monkeypatch.setattr(cache, "sha256_file", lambda p: pytest.fail("rehashed a memoised tarball"))
    assert source.resolve(str(tb), memo_file=memo).identity == s1.identity
    # unpacking publishes the tarball's single top directory as the pristine tree
    monkeypatch.undo()
    pristine = source.ensure_pristine(s1, tmp_path / "src")
    assert (pristine / "Makefile").is_file() and source.kernel_version(pristine) == "6.12.117-rc1"


def test_cache_hit_needs_no_source_work(inputs):
    req, root, _ = inputs
    key = compute_key(req, root)
    entry = root / "kernel" / "builds" / key
    entry.mkdir(parents=True)
    for n in ["bzImage", "vmlinux", "System.map", "config", "build.log"]:
        (entry / n).write_text(n)
    (entry / "meta.json").write_text(json.dumps({"key": key}))
    t0 = time.monotonic()
    kb = build_kernel(req, root)
    assert kb.cache_hit and kb.key == key and kb.bzimage == entry / "bzImage" and kb.meta == {"key": key}
    assert time.monotonic() - t0 < 5
    assert not (root / "kernel" / "work").exists() and not (root / "kernel" / "src").exists()


def test_entry_without_meta_is_not_a_hit(inputs, monkeypatch):
    req, root, _ = inputs
    key = compute_key(req, root)
    (root / "kernel" / "builds" / key).mkdir(parents=True)  # e.g. a half-copied directory
    monkeypatch.setattr(build, "_configure", lambda *a, **k: (_ for _ in ()).throw(CouldNotTest("configure reached")))
    with pytest.raises(CouldNotTest, match="configure reached"):
        build_kernel(req, root)


# ------------------------------------------------------------ bad input

def test_source_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        source.resolve(str(tmp_path / "missing"))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\0" * 10)
    with pytest.raises(UsageError, match="neither a tarball"):
        source.resolve(str(junk))
    with pytest.raises(UsageError, match="not a kernel tree"):
        source.resolve(str(tmp_path))
    tree = fake_tree(tmp_path / "linux")
    with pytest.raises(UsageError, match="needs a git repository"):
        source.resolve(str(tree), ref="v6.12")


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
                                   GIT_COMMITTER_EMAIL="t@e")).stdout.strip()


def test_git_source_exports_without_touching_the_repo(tmp_path):
    repo = fake_tree(tmp_path / "repo")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    c1 = git(repo, "rev-parse", "HEAD")
    (repo / "mm" / "mmap.c").write_text("changed\n")
    git(repo, "commit", "-qam", "two")
    (repo / "dirty").write_text("uncommitted\n")
    with pytest.raises(UsageError, match="unknown ref 'nope'"):
        source.resolve(str(repo), ref="nope")
    s = source.resolve(str(repo), ref="HEAD~1")
    assert s.kind == "git" and s.identity == c1
    before = git(repo, "status", "--porcelain")
    pristine = source.ensure_pristine(s, tmp_path / "src")
    assert (pristine / "mm" / "mmap.c").read_text().startswith("// SPDX")
    assert not (pristine / "dirty").exists() and not (pristine / ".git").exists()
    assert git(repo, "status", "--porcelain") == before and git(repo, "worktree", "list").count("\n") == 0
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    assert source.resolve(str(bare), ref="HEAD~1").identity == c1
    assert source.resolve(str(bare)).identity == git(repo, "rev-parse", "HEAD")  # no ref: HEAD


def test_missing_fragment_and_bad_base(inputs, tmp_path):
    req, root, _ = inputs
    req.fragments = [str(tmp_path / "nope.config")]
    with pytest.raises(UsageError, match="nope.config does not exist"):
        compute_key(req, root)
    req.fragments = []
    req.base_config = "rm -rf"
    with pytest.raises(UsageError, match="neither a file nor a make"):
        compute_key(req, root)


def test_cli_usage_error_exit_code(tmp_path, capsys):
    assert main(["--cache", str(tmp_path / "c"), "build", "--source", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kstress: error: --source") and "missing" in err and err.count("\n") == 1


def test_error_summary_keeps_compiler_errors():
    log = "\n".join([f"  CC      mm/f{i}.o" for i in range(5000)] + [
        "mm/mmap.c: In function 'foo':",
        "mm/mmap.c:10:5: \x1b[01;31m\x1b[Kerror: \x1b[m\x1b[K'bar' undeclared (first use in this function)",
        "mm/mmap.c:11:1: warning: unused variable",
        "make[4]: *** [scripts/Makefile.build:229: mm/mmap.o] Error 1",
        "make[3]: *** [scripts/Makefile.build:478: mm] Error 2",
        "make: *** [Makefile:224: __sub-make] Error 2",
    ] + ["  CC      mm/g.o"] * 100)
    lines = error_summary(log)
    assert lines[0] == "mm/mmap.c:10:5: error: 'bar' undeclared (first use in this function)"
    assert "make: *** [Makefile:224: __sub-make] Error 2" in lines
    assert len(lines) <= 20 and not any("CC" in x for x in lines)


# ------------------------------------------------------------ cache primitives

def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KSTRESS_CACHE", str(tmp_path / "c"))
    assert cache.cache_root() == tmp_path / "c"
    monkeypatch.delenv("KSTRESS_CACHE")
    assert cache.cache_root() == Path.home() / ".cache" / "kstress"


def test_publish_dir_is_first_writer_wins(tmp_path):
    final = tmp_path / "entries" / "k"
    t1 = cache.make_tmp_dir(tmp_path / "entries")
    (t1 / "x").write_text("1")
    t2 = cache.make_tmp_dir(tmp_path / "entries")
    (t2 / "x").write_text("2")
    assert cache.publish_dir(t1, final) is True
    assert cache.publish_dir(t2, final) is False
    assert (final / "x").read_text() == "1" and not t2.exists()


def test_stale_tmp_of_dead_process_is_removed(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    dead = tmp_path / f"{cache.TMP_PREFIX}{p.pid}-k"
    dead.mkdir()
    mine = cache.make_tmp_dir(tmp_path, "k")
    cache.clean_stale_tmp(tmp_path)
    assert not dead.exists() and mine.exists()


def test_atomic_write_bytes(tmp_path):
    f = tmp_path / "d" / "f"
    cache.atomic_write_bytes(f, b"one")
    cache.atomic_write_bytes(f, b"two")
    assert f.read_bytes() == b"two" and os.listdir(f.parent) == ["f"]


HOLDER = """
import sys, time
from harness import cache
with cache.locked(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_excludes_and_dies_with_holder(tmp_path):
    target = tmp_path / "work"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    try:
        assert holder.stdout.readline().strip() == "locked"
        import fcntl
        fd = os.open(cache.lock_path(target), os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the kernel dropped the dead holder's lock
        os.close(fd)
    finally:
        holder.kill()
        holder.wait()
    with cache.locked(target):
        pass
