"""Python workloads: scripts the Debian guest's python3 runs. Nothing is
built; each source is checked here (its #! line, its syntax) so that a broken
script fails at planning, naming file and line, not as a workload that dies
in the guest. Each source goes to /usr/bin/<its stem>, mode 0755."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UsageError
from harness.stress.manifest import Workload

SHEBANG = "#!/usr/bin/python3"


def check_script(path: Path) -> Path:
    """``path`` if it is a Python 3 script the guest can run directly; else a UsageError naming file:line."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    if text.split("\n", 1)[0] != SHEBANG:
        raise UsageError(f"{path}:1: expected the first line {SHEBANG} (the guest runs the script directly)")
    try:
        compile(text, str(path), "exec")
    except SyntaxError as exc:
        raise UsageError(f"{path}:{exc.lineno}: invalid Python: {exc.msg}") from None
    return Path(path)


def guest_files(w: Workload, cache_dir: Path | None = None) -> dict[str, Path]:
    return {src.stem: check_script(src) for src in w.sources}
