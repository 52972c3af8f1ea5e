"""Validation of junit.xml against the schema Jenkins' xunit plugin uses
(../shared/schemas/junit-10.xsd beside the repository)."""

from pathlib import Path

import pytest

SCHEMA = Path(__file__).resolve().parents[1].parent / "shared" / "schemas" / "junit-10.xsd"


def validate(xml_path: Path):
    """Parse and validate; returns the lxml document."""
    etree = pytest.importorskip("lxml.etree", reason="lxml (pip extra 'test') validates junit.xml")
    if not SCHEMA.is_file():
        pytest.skip(f"JUnit schema not found at {SCHEMA} (../shared/schemas/junit-10.xsd)")
    schema = etree.XMLSchema(etree.parse(str(SCHEMA)))
    doc = etree.parse(str(xml_path))
    assert schema.validate(doc), schema.error_log
    return doc
