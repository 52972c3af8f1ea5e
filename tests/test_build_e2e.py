"""Real kernel builds. They share one cache (conftest.kernel_cache): one cold
build, then hits and incremental builds only. Run: pytest -m e2e tests/test_build_e2e.py"""

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness import cache
from harness.errors import CouldNotTest, UsageError
from harness.kernel.build import DEFAULT_SOURCE, BuildRequest, build_kernel, compute_key
from harness.paths import default_fragments

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(DEFAULT_SOURCE).exists(), reason=f"{DEFAULT_SOURCE} not installed"),
]
DATA = Path(__file__).parent / "data" / "patches"
CC = re.compile(r"^\s+CC\s+(\[M\]\s+)?(\S+\.o)\s*$", re.M)


def fresh(name: str, tmp_path: Path) -> str:
    """A copy of a test series whose added comment carries a new token, so its key is
    new even when $KSTRESS_TEST_CACHE keeps entries from earlier sessions."""
    out = tmp_path / name
    out.mkdir(parents=True)
    for f in (DATA / name).iterdir():
        (out / f.name).write_text(f.read_text().replace(" */\n", f" {uuid.uuid4().hex} */\n", 1))
    return str(out)


def compiled(build_log: Path) -> list[str]:
    return [m.group(2) for m in CC.finditer(build_log.read_text())]


@pytest.fixture(scope="module")
def entries(kernel_cache):
    return kernel_cache / "kernel" / "builds"


@pytest.fixture(scope="module")
def base(kernel_cache):
    return build_kernel(BuildRequest(), kernel_cache)


def test_build_then_hit_twice(base, kernel_cache):
    for _ in range(2):
        t0 = time.monotonic()
        kb = build_kernel(BuildRequest(), kernel_cache)
        assert kb.cache_hit and kb.key == base.key and time.monotonic() - t0 < 10
    m = kb.meta
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?\S*", m["kernel_version"])
    assert m["debian_package"]["package"] == "linux-source-6.12"
    assert isinstance(m["ccache"], bool) and m["compiler"].startswith("gcc")
    assert set(m["timings"]) >= {"source_s", "patch_s", "config_s", "build_s", "total_s"}
    with open(kb.bzimage, "rb") as f:
        f.seek(0x202)
        assert f.read(4) == b"HdrS"  # x86 boot protocol header
    assert kb.vmlinux.read_bytes()[:4] == b"\x7fELF"
    cfg = kb.config.read_text()
    assert "CONFIG_DEBUG_VM=y" in cfg and "CONFIG_DEBUG_INFO_REDUCED=y" in cfg
    assert " T start_kernel" in kb.system_map.read_text()


def test_changed_fragment_misses(base, kernel_cache, repo_root, tmp_path):
    frags = []
    for f in default_fragments():
        frags.append(tmp_path / f.name)
        shutil.copyfile(f, frags[-1])
    req = BuildRequest(fragments=[str(f) for f in frags])
    assert build_kernel(req, kernel_cache).cache_hit  # copies elsewhere: bytes count, not paths
    with open(frags[0], "a") as f:
        f.write(f"# {uuid.uuid4().hex}\n")  # a comment: the resulting .config is the same, so the build is a no-op
    kb = build_kernel(req, kernel_cache)
    assert not kb.cache_hit and kb.key != base.key
    assert kb.meta["build_dir"] == base.meta["build_dir"]
    assert len(compiled(kb.build_log)) < 10


def test_changed_patch_rebuilds_a_handful(base, kernel_cache, tmp_path):
    pa, pb = fresh("a", tmp_path), fresh("b", tmp_path)
    a = build_kernel(BuildRequest(patches=pa), kernel_cache)
    b = build_kernel(BuildRequest(patches=pb), kernel_cache)
    assert not b.cache_hit and len({base.key, a.key, b.key}) == 3
    objs = compiled(b.build_log)
    assert "mm/mmap.o" in objs and len(objs) <= 10, objs
    assert b.meta["patched_files"] == ["mm/mmap.c"] and b.meta["build_dir"] == base.meta["build_dir"]
    assert build_kernel(BuildRequest(patches=pa), kernel_cache).cache_hit


def test_patch_that_does_not_apply(base, kernel_cache, entries):
    req = BuildRequest(patches=str(DATA / "bad"))
    with pytest.raises(CouldNotTest) as e:
        build_kernel(req, kernel_cache)
    assert str(e.value) == "patch 0002-mm-mremap-stale-context.patch does not apply: mm/mremap.c (hunk #1 FAILED)"
    assert e.value.exit_code == 125
    assert not (entries / compute_key(req, kernel_cache)).exists()


def test_sigkill_leaves_no_entry(base, kernel_cache, entries, repo_root, tmp_path):
    req = BuildRequest(patches=fresh("c", tmp_path))
    entry = entries / compute_key(req, kernel_cache)
    assert not entry.exists()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "--cache", str(kernel_cache), "build", "--patches", req.patches],
        cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "building bzImage" in line:
                break
        time.sleep(5)  # make is compiling now
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not entry.exists()
    assert all(p.name.startswith(cache.TMP_PREFIX) or (p / "meta.json").is_file()
               for p in entries.iterdir() if p.is_dir())
    # The orphaned make must stop and release the working copy; then the same build completes.
    t0 = time.monotonic()
    kb = build_kernel(req, kernel_cache)
    assert not kb.cache_hit and entry.is_dir()
    bdir, work = Path(kb.meta["build_dir"]), Path(kb.meta["work_dir"])
    assert (bdir / "mm/mmap.o").stat().st_mtime_ns >= (work / "mm/mmap.c").stat().st_mtime_ns
    assert "patch C" in (work / "mm/mmap.c").read_text()
    assert time.monotonic() - t0 < 600


def test_compile_error_reports_compiler_lines(base, kernel_cache, entries):
    req = BuildRequest(patches=str(DATA / "broken"))
    with pytest.raises(CouldNotTest) as e:
        build_kernel(req, kernel_cache)
    msg = str(e.value)
    head, *lines = msg.splitlines()
    assert head.startswith("kernel build failed (full log: ") and e.value.exit_code == 125
    log = Path(re.search(r"full log: (\S+)\)", head).group(1))
    assert log.is_file() and "mm/mmap.o" in log.read_text()
    assert any(re.search(r"mm/mmap\.c:\d+:\d+: error: #error \"kstress test: broken on purpose\"", x) for x in lines)
    assert any("***" in x for x in lines) and len(lines) <= 20
    assert not (entries / compute_key(req, kernel_cache)).exists()


def test_fragment_value_that_does_not_hold(base, kernel_cache, repo_root, tmp_path):
    extra = tmp_path / "impossible.config"
    # X86_32 cannot coexist with 64BIT=y; the second symbol does not exist at all.
    extra.write_text("CONFIG_X86_32=y\nCONFIG_KSTRESS_NO_SUCH_SYMBOL=y\n")
    frags = [str(f) for f in default_fragments()] + [str(extra)]
    with pytest.raises(UsageError) as e:
        build_kernel(BuildRequest(fragments=frags), kernel_cache)
    msg = str(e.value)
    assert e.value.exit_code == 2 and "\n" not in msg
    assert f"CONFIG_X86_32 asked y ({extra}:1), got unset" in msg
    assert f"CONFIG_KSTRESS_NO_SUCH_SYMBOL asked y ({extra}:2), got unset" in msg
    with pytest.raises(UsageError, match="'foobarconfig' is not a make target"):
        build_kernel(BuildRequest(base_config="foobarconfig"), kernel_cache)


def test_two_processes_take_turns(base, kernel_cache, repo_root, tmp_path):
    series = [fresh("a", tmp_path / "1"), fresh("b", tmp_path / "2")]
    argv = [sys.executable, "-m", "harness", "--cache", str(kernel_cache), "build", "--patches"]
    procs = [subprocess.Popen(argv + [s], cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in series]
    outs = [p.communicate(timeout=1200) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert any("waiting for" in err for _, err in outs)  # the second one waited for the working copy
    for s, (out, _) in zip(series, outs):
        entry = Path(out.strip())
        meta = json.loads((entry / "meta.json").read_text())
        assert meta["patches"][0]["sha256"] == hashlib.sha256(next(Path(s).iterdir()).read_bytes()).hexdigest()
        # each switched the shared working copy to its own series and recompiled what that changed
        assert "mm/mmap.o" in compiled(entry / "build.log")
