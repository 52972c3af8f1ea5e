"""Validation of run.json against the schema the package ships
(harness/run/run.schema.json), as junit_schema.py does for junit.xml."""

import json
from pathlib import Path

import pytest

from harness.paths import RUN_SCHEMA


def validate_run_json(path: Path) -> dict:
    """Parse and validate; returns the record. Raises jsonschema.ValidationError."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (pip extra 'test') validates run.json")
    data = json.loads(Path(path).read_text())
    schema = json.loads(RUN_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(data)
    return data
