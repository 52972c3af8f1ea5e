"""Patch series: loading (directory or mbox), and applying to a working copy.

Applying never leaves a half-patched tree and keeps make incremental:
  1. the series is applied with ``patch`` in a scratch directory holding only
     the pristine versions of the files it touches (so a failing patch leaves
     the working copy exactly as it was: a stronger guarantee than --dry-run);
  2. the working copy is then brought to the result: every file the previous
     or the new series touches gets its pristine or patched content, and a file
     is rewritten only if its bytes differ, so unchanged files keep their
     mtime and make recompiles only what really changed.
A journal (state file) lists the files that may differ from pristine, so a
process killed half way is repaired by the next run.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import mailbox
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import cache, log
from harness.errors import CouldNotTest, UsageError


@dataclass(frozen=True)
class Patch:
    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


# ---------------------------------------------------------------- loading

def _read_series_file(d: Path) -> list[str]:
    names = []
    for line in (d / "series").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line.split()[0])  # quilt allows options such as -p1 after the name
    return names


def _slug(subject: str) -> str:
    subject = re.sub(r"^\s*(\[[^\]]*\]\s*)+", "", subject)  # drop "[PATCH v2 1/3]"
    s = re.sub(r"[^A-Za-z0-9]+", "-", subject).strip("-").lower()
    return s[:52].rstrip("-") or "patch"


def _message_bytes(msg) -> bytes:
    """The message as patch(1) input: headers, then the decoded text body (patch skips the prose)."""
    head = "".join(f"{k}: {v}\n" for k, v in msg.items() if k.lower() in ("from", "date", "subject"))
    parts = msg.walk() if msg.is_multipart() else [msg]
    body = b""
    for part in parts:
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if payload:
            body += payload if payload.endswith(b"\n") else payload + b"\n"
    return head.encode("utf-8", "replace") + b"\n" + body


def split_mbox(path: Path) -> list[Patch]:
    """One Patch per message, named like git format-patch: 0001-subject-slug.patch."""
    box = mailbox.mbox(str(path), create=False,
                       factory=lambda f: email.message_from_binary_file(f, policy=email.policy.compat32))
    out = []
    try:
        for i, msg in enumerate(box, 1):
            out.append(Patch(f"{i:04d}-{_slug(str(msg.get('Subject', '')))}.patch", _message_bytes(msg)))
    finally:
        box.close()
    return out


def load_series(spec: str | os.PathLike) -> list[Patch]:
    """A directory of *.patch (``series`` order if present, else by name), an mbox, or one patch file."""
    p = Path(spec)
    if not p.exists():
        raise UsageError(f"patches path {p} does not exist")
    if p.is_dir():
        if (p / "series").is_file():
            names = _read_series_file(p)
            missing = [n for n in names if not (p / n).is_file()]
            if missing:
                raise UsageError(f"{p / 'series'} lists patches that do not exist: {', '.join(missing)}")
            unlisted = sorted(f.name for f in p.glob("*.patch") if f.name not in names)
            if unlisted:
                log.warn(f"{p / 'series'} does not list {', '.join(unlisted)}: not applied")
        else:
            names = sorted(f.name for f in p.iterdir() if f.name.endswith(".patch") and f.is_file())
        if not names:
            raise UsageError(f"patches directory {p} holds no *.patch files")
        return [Patch(n, (p / n).read_bytes()) for n in names]
    data = p.read_bytes()
    if data.startswith(b"From "):
        patches = split_mbox(p)
        if not patches:
            raise UsageError(f"mbox {p} holds no messages")
    else:
        patches = [Patch(p.name, data)]
    if not any(touched_files(x.data) for x in patches):
        raise UsageError(f"{p} holds no patches (no diff found)")
    return patches


# ---------------------------------------------------------------- parsing

_HUNK = re.compile(rb"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def _strip_p1(raw: bytes) -> str | None:
    name = raw.split(b"\t", 1)[0].rstrip(b"\r\n").decode("utf-8", "surrogateescape")
    if name.startswith('"'):
        name = name.strip('"')
    if name == "/dev/null":
        return None
    parts = name.split("/", 1)
    return parts[1] if len(parts) == 2 else None


def touched_files(data: bytes) -> list[str]:
    """Paths (relative, as with patch -p1) that a unified/git diff creates, changes or deletes.

    Hunk bodies are skipped by their line counts, so a removed line that
    starts with "-- " is not mistaken for a file header.
    """
    out: list[str] = []
    lines = data.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        ln = lines[i]
        m = _HUNK.match(ln)
        if m:
            old = int(m.group(1)) if m.group(1) is not None else 1
            new = int(m.group(2)) if m.group(2) is not None else 1
            i += 1
            while i < len(lines) and (old > 0 or new > 0):
                c = lines[i][:1]
                if c == b"-":
                    old -= 1
                elif c == b"+":
                    new -= 1
                elif c in (b" ", b"\n", b"\r"):
                    old -= 1
                    new -= 1
                elif c != b"\\":  # "\ No newline at end of file"
                    break
                i += 1
            continue
        if ln.startswith(b"--- ") and i + 1 < len(lines) and lines[i + 1].startswith(b"+++ "):
            for raw in (ln[4:], lines[i + 1][4:]):
                f = _strip_p1(raw)
                if f and f not in out:
                    out.append(f)
            i += 2
            continue
        if ln.startswith((b"rename from ", b"rename to ", b"copy to ")):
            f = ln.split(b" ", 2)[2].rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            if f not in out:
                out.append(f)
        i += 1
    for f in out:
        if f.startswith("/") or ".." in f.split("/"):
            raise UsageError(f"patch touches a path outside the tree: {f}")
    return out


def _failure(output: str) -> str:
    """'file (hunk #1 FAILED)' from patch(1)'s output, for the one-line error."""
    current = "?"
    hunks: list[str] = []
    for line in output.splitlines():
        m = re.match(r"^(?:patching|checking) file (.+?)\s*$", line)
        if m:
            if hunks:
                break
            current = m.group(1).strip("'\"")
            continue
        m = re.match(r"^Hunk #(\d+) FAILED", line)
        if m:
            hunks.append(f"hunk #{m.group(1)} FAILED")
            continue
        if "Reversed (or previously applied) patch detected" in line:
            return f"{current} (reversed or already applied)"
        m = re.search(r"malformed patch at line (\d+)", line)
        if m:
            return f"{current} (malformed patch at line {m.group(1)})"
        if "can't find file to patch" in line:
            # patch quotes the header it could not use: "|--- a/mm/x.c"
            named = [ln[5:] for ln in output.splitlines() if ln.startswith("|--- ")]
            name = _strip_p1(named[0].encode()) if named else None
            return f"{name or current} (file to patch not found)"
    if hunks:
        return f"{current} ({', '.join(hunks)})"
    last = output.strip().splitlines()[-1] if output.strip() else "no output"
    return f"{current} ({last})"


# ---------------------------------------------------------------- applying

def _state_file(work: Path) -> Path:
    return work.with_name(work.name + ".patches.json")


def _read_state(work: Path) -> dict:
    try:
        return json.loads(_state_file(work).read_text())
    except (OSError, ValueError):
        return {"touched": [], "series": []}


def touched_now(work: Path) -> list[str]:
    """Files that may differ from pristine in ``work`` (from the journal)."""
    return list(_read_state(work).get("touched") or [])


def reset_state(work: Path) -> None:
    """Forget the journal: for a working copy just created from pristine."""
    try:
        _state_file(work).unlink()
    except FileNotFoundError:
        pass


def applied_series(work: Path) -> list[str]:
    """sha256 of each patch currently applied to ``work`` (for meta and tests)."""
    return list(_read_state(work).get("series") or [])


def _stage(series: list[Patch], pristine: Path, staging: Path) -> list[str]:
    """Apply ``series`` in ``staging`` (seeded from ``pristine``); return the touched paths."""
    touched: list[str] = []
    per_patch = [(p, touched_files(p.data)) for p in series]
    for _, files in per_patch:
        for f in files:
            if f in touched:
                continue
            touched.append(f)
            src = pristine / f
            if src.is_file() or src.is_symlink():
                dst = staging / f
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst, follow_symlinks=False)
    patch_dir = staging.parent
    for p, files in per_patch:
        if not files:
            raise UsageError(f"patch {p.name} holds no diff")
        pf = patch_dir / "current.patch"
        pf.write_bytes(p.data)
        r = subprocess.run(
            ["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch",
             "--reject-file=-", "-d", str(staging), "-i", str(pf)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        )
        if r.returncode != 0:
            # CouldNotTest (125): this tree cannot carry the series, which is
            # what `git bisect run` must hear to skip the commit.
            raise CouldNotTest(f"patch {p.name} does not apply: {_failure(r.stdout)}")
        fuzzy = [ln for ln in r.stdout.splitlines() if "with fuzz" in ln]
        if fuzzy:
            log.warn(f"patch {p.name} applied with fuzz (check it): {fuzzy[0]}")
    return touched


def _same_content(a: Path, b: Path) -> bool:
    try:
        if a.is_symlink() or b.is_symlink():
            return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
        sa, sb = a.stat(), b.stat()
    except FileNotFoundError:
        return False
    if sa.st_size != sb.st_size or (sa.st_mode & 0o111) != (sb.st_mode & 0o111):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _replace(dst: Path, src: Path) -> None:
    """Put a copy of ``src`` at ``dst`` by rename: never writes through a hard link to the pristine tree."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kstress-", dir=dst.parent)
    os.close(fd)
    os.unlink(tmp)
    shutil.copy2(src, tmp, follow_symlinks=False)
    os.utime(tmp, follow_symlinks=False)  # new content needs a new mtime, whatever src had
    os.rename(tmp, dst)


def apply_series(series: list[Patch], pristine: Path, work: Path) -> dict:
    """Make ``work`` equal to ``pristine`` plus ``series``, touching as few files as possible.

    The caller holds the working copy's lock. Returns a summary for meta.json.
    """
    pristine, work = Path(pristine), Path(work)
    state = _read_state(work)
    previous = set(state.get("touched") or [])
    with tempfile.TemporaryDirectory(prefix="kstress-patch-") as td:
        staging = Path(td) / "tree"
        staging.mkdir()
        touched = _stage(series, pristine, staging)  # raises before the working copy is touched
        # Journal first: if we die below, the next run still knows every file that may differ.
        cache.atomic_write_json(_state_file(work), {"touched": sorted(previous | set(touched)), "series": None})
        changed = []
        for rel in sorted(previous | set(touched)):
            want = (staging if rel in touched else pristine) / rel
            have = work / rel
            if not (want.exists() or want.is_symlink()):
                if have.exists() or have.is_symlink():
                    have.unlink()
                    changed.append(rel)
                continue
            if _same_content(want, have):
                continue  # same bytes: keep the mtime so make does not rebuild it
            _replace(have, want)
            changed.append(rel)
    cache.atomic_write_json(_state_file(work), {"touched": sorted(touched), "series": [p.sha256 for p in series]})
    return {"touched": sorted(touched), "rewritten": changed}
