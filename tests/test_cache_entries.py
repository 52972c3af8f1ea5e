"""The cache's entries, their LRU order and pruning: never an entry in use."""

from __future__ import annotations

import os
import textwrap

import pytest

from harness import cache, cache_entries
from harness.cache_entries import entries, in_use, parse_size, prune
from harness.cli import main
from harness.config import load_config
from harness.errors import UsageError

MB = 1 << 20


def make(root, rel, size_mb, age_s):
    """An entry of ``size_mb`` written ``age_s`` seconds ago (a directory unless it ends .cpio.gz)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path if rel.endswith(".cpio.gz") else path / "data"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(os.urandom(size_mb * MB))
    t = 1_700_000_000 - age_s
    os.utime(path, (t, t))
    return path


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "cache"
    make(r, "kernel/builds/aaaa", 4, 500)
    make(r, "kernel/builds/bbbb", 4, 100)
    make(r, "kernel/obj/tarball-1234-cafe", 8, 400)
    make(r, "kernel/work/tarball-1234", 6, 50)
    make(r, "kernel/src/tarball-1234", 6, 300)
    make(r, "debian/image-cccc", 3, 200)
    make(r, "initramfs/initramfs-dddd.cpio.gz", 1, 600)
    make(r, "workloads/migrate_fork-eeee", 1, 700)
    make(r, "ccache", 2, 10_000)
    # Not entries: locks, use marks, the hash memo, a writer's temp dir.
    for rel in ("kernel/builds/aaaa.lock", "kernel/builds/aaaa.use", "kernel/sha256-memo.json"):
        (r / rel).write_text("")
    make(r, "kernel/builds/.tmp-1-x", 1, 0)
    return r


def names(es):
    return [e.path.name for e in es]


def test_entries_are_listed_least_recently_used_first(root):
    es = entries(root)
    order = [(e.kind.name, e.path.name) for e in es]
    assert order == [("ccache", "ccache"), ("workload", "migrate_fork-eeee"),
                     ("initramfs", "initramfs-dddd.cpio.gz"), ("kernel", "aaaa"),
                     ("kernel-build-dir", "tarball-1234-cafe"), ("kernel-source", "tarball-1234"),
                     ("debian-image", "image-cccc"), ("kernel", "bbbb"), ("kernel-work-tree", "tarball-1234")]
    assert all(e.size >= MB for e in es)


def test_prune_evicts_least_recently_used_until_under_the_limit(root):
    res = prune(25 * MB, root)
    # ccache is never ours to evict; then the oldest go first until <= 25 MB.
    assert names(res.evicted) == ["migrate_fork-eeee", "initramfs-dddd.cpio.gz", "aaaa", "tarball-1234-cafe"]
    assert res.size_after <= 25 * MB < res.size_before
    assert not (root / "kernel/builds/aaaa").exists() and (root / "kernel/builds/bbbb").is_dir()
    assert not [p for p in (root / "kernel/builds").iterdir() if p.name.startswith(".tmp-") and "evict" in p.name]


def test_dry_run_evicts_nothing(root):
    res = prune(0, root, dry_run=True)
    assert len(res.evicted) == 8 and all(e.path.exists() for e in res.evicted)


def test_an_entry_in_use_is_never_evicted(root):
    kernel = root / "kernel/builds/aaaa"
    with in_use([kernel]):
        res = prune(0, root)
    assert kernel.is_dir() and names(res.busy) == ["aaaa"]
    assert prune(0, root).busy == []  # released with the run
    assert not kernel.exists()


def test_a_build_holds_its_work_tree_build_dirs_and_every_source(root):
    with cache.locked(root / "kernel/work/tarball-1234"):
        res = prune(0, root)
    assert sorted(names(res.busy)) == ["tarball-1234", "tarball-1234", "tarball-1234-cafe"]
    for rel in ("kernel/obj/tarball-1234-cafe", "kernel/work/tarball-1234", "kernel/src/tarball-1234"):
        assert (root / rel).is_dir()


def test_an_image_being_built_is_not_evicted(root):
    with cache.locked(root / "debian/image-cccc"):
        assert names(prune(0, root).busy) == ["image-cccc"]


def test_in_use_marks_the_entry_used_now(root):
    kernel = root / "kernel/builds/aaaa"
    with in_use([kernel]):
        pass
    assert entries(root)[-1].path == kernel


def test_build_dir_names_their_work_tree(tmp_path):
    for name, work in (("tarball-1234-cafe", "tarball-1234"), ("tarball-1234.config", "tarball-1234"),
                       ("dir-abcd-0123", "dir-abcd")):
        e = cache_entries.Entry(cache_entries.KINDS[1], tmp_path / "kernel" / "obj" / name, 0, 0)
        assert e.work_id == work


@pytest.mark.parametrize("text,size", [("40G", 40 << 30), ("500M", 500 << 20), ("1.5T", int(1.5 * (1 << 40))),
                                       ("123", 123), ("2GiB", 2 << 30), ("10k", 10 << 10)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "ten gigs", "-1G", "4X"])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError, match="expected a size such as 40G"):
        parse_size(text)


def test_config_size_limit_is_checked_with_file_and_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(textwrap.dedent("""\
        run:
          cache_max_size: 40 gigs
        """))
    with pytest.raises(UsageError, match=r"c\.yaml:2: run\.cache_max_size: expected a size such as 40G"):
        load_config(cfg)
    cfg.write_text("run:\n  cache_max_size: 40G\n")
    assert load_config(cfg).cache_max_size == 40 << 30


def test_cli_lists_and_prunes(root, capsys):
    assert main(["--cache", str(root), "cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "kernel-build-dir" in out and "9 entries" in out
    assert main(["--cache", str(root), "cache", "prune", "--max-size", "30M"]) == 0
    out = capsys.readouterr().out
    assert "evicted kernel " in out and not (root / "kernel/builds/aaaa").exists()
    assert main(["--cache", str(root), "cache", "prune", "--max-size", "lots"]) == 2
