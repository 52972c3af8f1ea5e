"""The example patch series apply to the installed Debian linux-source: when
Debian moves the version, this names the patch that no longer applies."""

from __future__ import annotations

from pathlib import Path

import pytest
from linux_source import apply_failure, extract, files_of

from harness.kernel.build import DEFAULT_SOURCE
from harness.kernel.patches import load_series

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SERIES = sorted(d for d in EXAMPLES.iterdir() if d.is_dir())


@pytest.mark.skipif(not DEFAULT_SOURCE.exists(),
                    reason=f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)")
@pytest.mark.parametrize("series", SERIES, ids=[d.name for d in SERIES])
def test_example_series_applies_to_the_installed_source(series, tmp_path):
    patches = load_series(series)
    extract(files_of(patches), tmp_path)
    for p in patches:
        failure = apply_failure(p, tmp_path)
        assert failure is None, f"{series.name}/{p.name} no longer applies to {DEFAULT_SOURCE}:\n{failure}"


def test_every_example_is_in_the_readme():
    readme = (EXAMPLES / "README.md").read_text()
    assert [d.name for d in SERIES if f"`{d.name}/`" not in readme] == []
