"""Results of one run: run.json (everything machine-readable) and junit.xml.

Both are rewritten atomically after every stage, so a run killed at any
point leaves the record of what it had collected.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xml.etree.ElementTree as ET

from junit_xml import TestCase, TestSuite

from .cache import atomic_write_bytes

# XML 1.0 forbids most control characters; consoles are full of them.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    return _XML_ILLEGAL.sub("\ufffd", text)


def atomic_write_text(path: Path, text: str) -> None:
    # Readable by the CI user that collects results (mkstemp makes files private).
    atomic_write_bytes(path, text.encode("utf-8"), mode=0o644)


@dataclass
class CaseResult:
    """One testcase. Names are stable from night to night (no seed, no time),
    so that Jenkins keeps their history."""

    name: str
    classname: str = "kstress"
    status: str = "passed"          # passed | failure | error | skipped
    message: str = ""
    text: str = ""
    failure_type: str = ""
    elapsed: float = 0.0
    stdout: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, message: str, text: str, failure_type: str) -> None:
        if self.status == "failure":
            self.text += "\n\n" + text
            # A kernel finding outranks any other failure of the same case.
            if failure_type == "kernel" and self.failure_type != "kernel":
                self.message, self.failure_type = message, failure_type
            return
        self.status, self.message, self.text, self.failure_type = "failure", message, text, failure_type

    def error(self, message: str, text: str = "") -> None:
        if self.status == "failure":
            self.text += "\n\n" + f"{message}\n{text}"
            return
        self.status, self.message, self.text, self.failure_type = "error", message, text, "kstress"


class RunReport:
    """The results directory of one run."""

    def __init__(self, run_dir: Path, run_id: str, suite_name: str = "kstress"):
        self.run_dir = run_dir
        self.run_id = run_id
        self.suite_name = suite_name
        self.started = time.time()
        self.properties: dict[str, str] = {}
        self.cases: list[CaseResult] = []
        self.record: dict[str, Any] = {"run_id": run_id, "started": self.started,
                                       "host": socket.gethostname(), "status": "running"}

    def case(self, name: str) -> CaseResult:
        for c in self.cases:
            if c.name == name:
                return c
        c = CaseResult(name=name)
        self.cases.append(c)
        return c

    def set_property(self, name: str, value: Any) -> None:
        self.properties[name] = "" if value is None else str(value)

    def junit_xml(self) -> str:
        cases = []
        for c in self.cases:
            tc = TestCase(c.name, classname=c.classname, elapsed_sec=round(c.elapsed, 3),
                          stdout=xml_safe(c.stdout) or None)
            if c.status == "failure":
                tc.add_failure_info(message=xml_safe(c.message), output=xml_safe(c.text),
                                    failure_type=c.failure_type or "kernel")
            elif c.status == "error":
                tc.add_error_info(message=xml_safe(c.message), output=xml_safe(c.text),
                                  error_type=c.failure_type or "kstress")
            elif c.status == "skipped":
                tc.add_skipped_info(message=xml_safe(c.message), output=xml_safe(c.text))
            cases.append(tc)
        props = {k: xml_safe(v) for k, v in self.properties.items()}
        suite = TestSuite(self.suite_name, cases, properties=props, id=self.run_id,
                          hostname=socket.gethostname(),
                          timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.started)))
        # junit-xml adds a `disabled` attribute that the JUnit schema Jenkins'
        # xunit plugin validates against does not allow: drop it.
        suite_el = suite.build_xml_doc(encoding="utf-8")
        suite_el.attrib.pop("disabled", None)
        root = ET.Element("testsuites", {k: suite_el.get(k, "0") for k in ("tests", "failures", "errors")})
        root.set("name", self.suite_name)
        root.set("time", suite_el.get("time", "0"))
        root.append(suite_el)
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def write(self) -> None:
        self.record["updated"] = time.time()
        self.record["properties"] = dict(self.properties)
        self.record["testcases"] = [c.__dict__ for c in self.cases]
        atomic_write_text(self.run_dir / "run.json",
                          json.dumps(self.record, indent=2, sort_keys=True, default=str) + "\n")
        atomic_write_text(self.run_dir / "junit.xml", self.junit_xml())
