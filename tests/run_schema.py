"""Validation of run.json and soak.json against the schemas the package
ships (harness/run/run.schema.json, harness/modes/soak.schema.json), as
junit_schema.py does for junit.xml."""

import json
from pathlib import Path

import pytest

from harness.paths import RUN_SCHEMA, SOAK_SCHEMA


def validate_json(path: Path, schema_path: Path) -> dict:
    """Parse and validate; returns the data. Raises jsonschema.ValidationError."""
    jsonschema = pytest.importorskip("jsonschema", reason=f"jsonschema (pip extra 'test') validates {Path(path).name}")
    data = json.loads(Path(path).read_text())
    schema = json.loads(schema_path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(data)
    return data


def validate_run_json(path: Path) -> dict:
    return validate_json(path, RUN_SCHEMA)


def validate_soak_json(path: Path) -> dict:
    return validate_json(path, SOAK_SCHEMA)
