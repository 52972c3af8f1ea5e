"""Per-boot grouping: the first oops of a boot is the finding, what follows is its aftermath.

Also detects an unexpected reboot: a new boot banner when the previous boot
neither crashed nor shut down cleanly.
"""

from typing import Iterable, List, Optional

from .model import Finding
from .signature import signature_of


def _short(title: str) -> str:
    return title if len(title) <= 100 else title[:97] + "..."


def group(events: Iterable, first_content: int = 0) -> List[Finding]:
    """Findings in log order, with aftermath folded into the report that caused it."""
    findings: List[Finding] = []
    boot = 0
    kernel_seen = False          # a "Linux version" banner was seen in this boot
    first_banner = True
    culprit: Optional[Finding] = None   # the oops (or last report) that later reports follow from
    fatal = False                # culprit was an oops: everything after it is aftermath
    ended = False                # the boot crashed (panic/oops) or shut down cleanly
    version: Optional[str] = None
    seen = {}
    for event in events:
        if event.kind == "content":
            first_content = event.start
            continue
        if event.kind == "banner":
            if first_banner:
                # Anything printed before the first banner came from an earlier boot.
                new_boot = event.start > first_content
                first_banner = False
            else:
                new_boot = kernel_seen      # SeaBIOS..."Linux version" is one boot
            if new_boot:
                if not ended:
                    findings.append(_reboot(event.start, boot))
                boot += 1
                culprit, fatal, ended, kernel_seen, seen = None, False, False, False, {}
            if event.version:
                kernel_seen = True
                version = event.version
            continue
        if event.kind == "shutdown":
            ended = True
            continue
        finding = event.finding
        rule = event.rule
        finding.boot = boot
        if finding.kernel_version is None:
            finding.kernel_version = version
        if fatal or (culprit is not None and rule.ends_previous_report):
            culprit.aftermath.append(_short(finding.title))
            ended = True
            continue
        if finding.signature in seen and not finding.informational:
            seen[finding.signature].aftermath.append(_short(finding.title))
            continue
        seen[finding.signature] = finding
        findings.append(finding)
        if not finding.informational:
            culprit = finding
        if rule.fatal:
            fatal = True
            ended = True
    return findings


def _reboot(offset: int, boot: int) -> Finding:
    finding = Finding(cls="reboot", type="REBOOT", title="unexpected kernel reboot",
                      start=offset, end=offset, boot=boot)
    finding.signature = signature_of(finding)
    return finding
