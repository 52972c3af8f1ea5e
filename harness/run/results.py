"""The results directory of one run: results/<run-id>/ with console.log,
<workload>.out, run.json, junit.xml and summary.txt."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from harness.run.junit import junit_xml
from harness.run.record import RunRecord, atomic_write_text, write_run_json


def new_run_dir(results: Path) -> tuple[str, Path]:
    """results/<run-id>/, unique even for two runs started in the same second."""
    results.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        run_dir = results / run_id
        try:
            run_dir.mkdir()
            return run_id, run_dir
        except FileExistsError:
            continue


def file_size(path: Path) -> int:
    """Bytes in ``path`` so far (console.log grows while a guest runs); 0 before it exists."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def write_results(run_dir: Path, record: RunRecord) -> None:
    """run.json and junit.xml, each replaced atomically."""
    write_run_json(run_dir, record)
    atomic_write_text(run_dir / "junit.xml", junit_xml(record))
