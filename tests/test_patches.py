import os
from pathlib import Path

import pytest

from harness.errors import CouldNotTest, UsageError
from harness.kernel import patches
from harness.kernel.patches import Patch, apply_series, load_series, touched_files

DATA = Path(__file__).parent / "data" / "patches"


def diff(path: str, old: list[str], new: list[str], start: int = 1) -> str:
    """A one-hunk unified diff replacing ``old`` lines by ``new`` lines at ``start``."""
    body = "".join(f"-{x}\n" for x in old) + "".join(f"+{x}\n" for x in new)
    return (f"--- a/{path}\n+++ b/{path}\n@@ -{start},{len(old)} +{start},{len(new)} @@\n" + body)


# ------------------------------------------------------------ loading

def test_directory_sorted_by_name(tmp_path):
    for n in ["0002-b.patch", "0001-a.patch", "10-c.patch", "notes.txt"]:
        (tmp_path / n).write_text(diff("f", ["x"], ["y"]))
    assert [p.name for p in load_series(tmp_path)] == ["0001-a.patch", "0002-b.patch", "10-c.patch"]


def test_series_file_order_wins():
    assert [p.name for p in load_series(DATA / "bad")] == [
        "0001-mm-mmap-comment-a.patch", "0002-mm-mremap-stale-context.patch"]


def test_series_file_lists_missing_patch(tmp_path):
    (tmp_path / "series").write_text("0001-here.patch\n0002-gone.patch\n")
    (tmp_path / "0001-here.patch").write_text(diff("f", ["x"], ["y"]))
    with pytest.raises(UsageError, match="0002-gone.patch"):
        load_series(tmp_path)


def test_bad_patch_paths(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_series(tmp_path / "nope")
    with pytest.raises(UsageError, match="holds no"):
        load_series(tmp_path)
    (tmp_path / "x.txt").write_text("no diff here\n")
    with pytest.raises(UsageError, match="holds no patches"):
        load_series(tmp_path / "x.txt")


def test_mbox_split():
    ps = load_series(DATA / "mbox" / "series.mbox")
    assert [p.name for p in ps] == ["0001-mm-mmap-test-comment-a.patch", "0002-mm-mremap-test-comment.patch"]
    assert [touched_files(p.data) for p in ps] == [["mm/mmap.c"], ["mm/mremap.c"]]
    assert b"Subject: [PATCH 2/2] mm/mremap: test comment" in ps[1].data


def test_touched_files_skips_hunk_bodies():
    # A removed line "-- x" looks like a file header ("--- x") unless hunk counts are honoured.
    p = ("diff --git a/mm/a.c b/mm/a.c\n--- a/mm/a.c\t2024-01-01\n+++ b/mm/a.c\n@@ -1 +1 @@\n"
         "--- not/a.file\n+++ not/b.file\n"
         "--- /dev/null\n+++ b/mm/new.c\n@@ -0,0 +1 @@\n+x\n"
         "diff --git a/mm/old.c b/mm/old.c\ndeleted file mode 100644\n--- a/mm/old.c\n+++ /dev/null\n"
         "@@ -1 +0,0 @@\n-x\n")
    assert touched_files(p.encode()) == ["mm/a.c", "mm/new.c", "mm/old.c"]


def test_touched_files_outside_tree():
    with pytest.raises(UsageError, match="outside the tree"):
        touched_files(diff("../etc/passwd", ["x"], ["y"]).encode())


# ------------------------------------------------------------ applying

@pytest.fixture
def trees(tmp_path):
    pristine = tmp_path / "pristine"
    (pristine / "mm").mkdir(parents=True)
    for n in ["a.c", "b.c", "c.c"]:
        (pristine / "mm" / n).write_text(f"{n} line 1\n{n} line 2\n")
    work = tmp_path / "work"
    os.system(f"cp -al {pristine} {work}")
    old = 1_000_000_000 * 10**9  # an mtime far in the past, to see what gets rewritten
    for f in work.rglob("*.c"):
        os.utime(f, ns=(old, old))
    return pristine, work, old


def P(name, text):
    return Patch(name, text.encode())


def mtime(p):
    return p.stat().st_mtime_ns


def test_switching_series_rewrites_only_changed_files(trees):
    pristine, work, old = trees
    a = P("A.patch", diff("mm/a.c", ["a.c line 1"], ["a.c PATCHED"]) + diff("mm/b.c", ["b.c line 1"], ["b.c PATCHED"]))
    r = apply_series([a], pristine, work)
    assert r["rewritten"] == ["mm/a.c", "mm/b.c"]
    assert (work / "mm/a.c").read_text() == "a.c PATCHED\na.c line 2\n"
    assert (pristine / "mm/a.c").read_text() == "a.c line 1\na.c line 2\n"  # hard link not written through
    os.utime(work / "mm/b.c", ns=(old, old))
    # B: same change to b.c, a.c back to pristine, new file d.c
    b = P("B.patch", diff("mm/b.c", ["b.c line 1"], ["b.c PATCHED"])
          + "--- /dev/null\n+++ b/mm/d.c\n@@ -0,0 +1 @@\n+new\n")
    r = apply_series([b], pristine, work)
    assert r["rewritten"] == ["mm/a.c", "mm/d.c"]
    assert mtime(work / "mm/b.c") == old  # same bytes: mtime kept, make will not rebuild it
    assert mtime(work / "mm/c.c") == old
    assert mtime(work / "mm/a.c") > old and (work / "mm/a.c").read_text() == "a.c line 1\na.c line 2\n"
    assert (work / "mm/d.c").read_text() == "new\n"
    # no series: everything back to pristine, the created file removed
    r = apply_series([], pristine, work)
    assert r["rewritten"] == ["mm/b.c", "mm/d.c"] and not (work / "mm/d.c").exists()
    assert patches.touched_now(work) == []


def test_failing_patch_leaves_tree_untouched(trees):
    pristine, work, old = trees
    ok = P("0001-ok.patch", diff("mm/a.c", ["a.c line 1"], ["a.c PATCHED"]))
    apply_series([ok], pristine, work)
    before = {f: (f.read_bytes(), mtime(f)) for f in work.rglob("*.c")}
    bad = P("0002-foo.patch", diff("mm/c.c", ["no such line"], ["y"]))
    with pytest.raises(CouldNotTest) as e:
        apply_series([P("0001-other.patch", diff("mm/b.c", ["b.c line 1"], ["B"])), bad], pristine, work)
    assert str(e.value) == "patch 0002-foo.patch does not apply: mm/c.c (hunk #1 FAILED)"
    assert {f: (f.read_bytes(), mtime(f)) for f in work.rglob("*.c")} == before
    assert patches.applied_series(work) == [ok.sha256]


def test_already_applied_and_missing_file(trees):
    pristine, work, _ = trees
    a = P("A.patch", diff("mm/a.c", ["a.c line 1"], ["a.c PATCHED"]))
    with pytest.raises(CouldNotTest, match=r"^patch A2.patch does not apply: mm/a.c \(reversed or already applied\)$"):
        apply_series([a, P("A2.patch", a.data.decode())], pristine, work)
    with pytest.raises(CouldNotTest, match=r"^patch M.patch does not apply: mm/zzz.c \(file to patch not found\)$"):
        apply_series([P("M.patch", diff("mm/zzz.c", ["x"], ["y"]))], pristine, work)


def test_interrupted_switch_is_repaired(trees, monkeypatch):
    pristine, work, _ = trees
    a = P("A.patch", diff("mm/a.c", ["a.c line 1"], ["A"]))
    apply_series([a], pristine, work)
    b = P("B.patch", diff("mm/b.c", ["b.c line 1"], ["B"]))
    calls = []

    def dying_replace(dst, src):  # die after the journal is written, before any file changes
        calls.append(dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(patches, "_replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        apply_series([b], pristine, work)
    monkeypatch.undo()
    assert set(patches.touched_now(work)) == {"mm/a.c", "mm/b.c"}
    apply_series([b], pristine, work)
    assert (work / "mm/a.c").read_text() == "a.c line 1\na.c line 2\n"
    assert (work / "mm/b.c").read_text() == "B\nb.c line 2\n"


def test_directory_source_working_copy(tmp_path):
    """A directory source is rsynced into the working copy, never patched in place;
    files the series touches keep their mtime across runs when their content is unchanged."""
    from harness.kernel import source

    user = tmp_path / "linux"
    (user / "scripts" / "kconfig").mkdir(parents=True)
    (user / "Makefile").write_text("VERSION = 6\n")
    (user / "Kconfig").write_text("\n")
    (user / "mm").mkdir()
    (user / "mm" / "a.c").write_text("a.c line 1\na.c line 2\n")
    (user / "mm" / "b.c").write_text("b\n")
    src = source.resolve(str(user))
    assert src.kind == "directory"
    work = tmp_path / "work" / src.work_id
    series = [P("A.patch", diff("mm/a.c", ["a.c line 1"], ["a.c PATCHED"]))]
    source.ensure_work(src, user, work, patches.touched_now(work))
    apply_series(series, user, work)
    assert (user / "mm" / "a.c").read_text() == "a.c line 1\na.c line 2\n"  # user's tree untouched
    patched_mtime = mtime(work / "mm" / "a.c")
    (user / "mm" / "b.c").write_text("b edited\n")
    source.ensure_work(src, user, work, patches.touched_now(work))
    r = apply_series(series, user, work)
    assert r["rewritten"] == [] and mtime(work / "mm" / "a.c") == patched_mtime
    assert (work / "mm" / "b.c").read_text() == "b edited\n"
    assert (work / "mm" / "a.c").read_text() == "a.c PATCHED\na.c line 2\n"
