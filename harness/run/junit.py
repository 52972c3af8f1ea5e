"""junit.xml from a RunRecord, valid against the JUnit schema Jenkins'
xunit plugin validates against (../shared/schemas/junit-10.xsd).

A kernel finding is a <failure>, our own trouble an <error>, a testcase
that never ran <skipped>; properties carry kernel version, seed and the
evidence counters."""

from __future__ import annotations

import re
import socket
import time
import xml.etree.ElementTree as ET

from junit_xml import TestCase, TestSuite

from harness.run.record import RunRecord

# XML 1.0 forbids most control characters; consoles are full of them.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    return _XML_ILLEGAL.sub("\ufffd", text)


def junit_xml(record: RunRecord, suite_name: str = "kstress") -> str:
    return junit_suites([(suite_name, record)], suite_name)


def junit_suites(suites: list[tuple[str, RunRecord]], name: str) -> str:
    """One <testsuites> of one <testsuite> per (suite name, record)."""
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "errors": 0}
    seconds = 0.0
    for suite_name, record in suites:
        suite_el = _suite(record, suite_name)
        for k in totals:
            totals[k] += int(suite_el.get(k, "0"))
        seconds += float(suite_el.get("time", "0"))
        root.append(suite_el)
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", str(round(seconds, 3)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(record: RunRecord, suite_name: str) -> ET.Element:
    cases = []
    for c in record.testcases:
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
    props = {k: xml_safe(v) for k, v in record.properties.items()}
    suite = TestSuite(suite_name, cases, properties=props, id=record.run_id,
                      hostname=socket.gethostname(),
                      timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.started)))
    # junit-xml adds a `disabled` attribute that the JUnit schema Jenkins'
    # xunit plugin validates against does not allow: drop it.
    suite_el = suite.build_xml_doc(encoding="utf-8")
    suite_el.attrib.pop("disabled", None)
    return suite_el
