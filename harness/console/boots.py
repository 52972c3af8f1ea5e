"""Per-boot grouping: the first oops of a boot is the finding, what follows is its aftermath.

Also detects an unexpected reboot: a new boot banner when the previous boot
neither crashed nor shut down cleanly.
"""

from typing import Iterable, List, Optional

from .model import Finding
from .signature import signature_of

# Two CPUs that hit the same bug at once: the first report printed may be cut
# short by the other's oops and panic. A complete report of the same class
# starting this close after the cut one's end stands in for it.
SIMULTANEOUS_BYTES = 4096


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
            if _stands_in_for(finding, culprit):
                findings[findings.index(culprit)] = seen[finding.signature] = finding
                seen.pop(culprit.signature, None)
                finding.aftermath[:0] = [_short(culprit.title), *culprit.aftermath]
                culprit, fatal = finding, fatal or rule.fatal
            else:
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


def _stands_in_for(finding: Finding, culprit: Finding) -> bool:
    """Is ``finding`` the whole report of the bug whose first report, ``culprit``,
    another CPU cut short?"""
    return (culprit.corrupted and not finding.corrupted and not finding.informational
            and finding.cls == culprit.cls and not culprit.aftermath
            and 0 <= finding.start - culprit.end <= SIMULTANEOUS_BYTES)


def _reboot(offset: int, boot: int) -> Finding:
    finding = Finding(cls="reboot", type="REBOOT", title="unexpected kernel reboot",
                      start=offset, end=offset, boot=boot)
    finding.signature = signature_of(finding)
    return finding
