"""`kstress scan LOG...`: print findings, exit 0 clean / 1 findings / 2 bad input."""

import argparse
import json
import os
import sys
from typing import List, Optional

from ..errors import EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE
from .analyze import analyze_file
from .symbolize import SymbolizeError


def _input_problem(path: str) -> Optional[str]:
    try:
        os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except PermissionError:
        # os.path.exists() says False here too: name the real cause.
        return "permission denied (a directory on the path cannot be searched)"
    except OSError as exc:
        return exc.strerror or str(exc)
    if os.path.isdir(path):
        return "is a directory, expected a console log file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return "file is empty"
    return None


def _error(path: str, what: str) -> None:
    print(f"kstress scan: error: {path}: {what}", file=sys.stderr)


def _human(path: str, finding) -> str:
    where = f"{finding.file}:{finding.line}" if finding.file else ""
    lines = [f"{path}: [{finding.cls}] {finding.title}" + ("  (informational)" if finding.informational else "")]
    details = [f"offset {finding.start}-{finding.end}", f"boot {finding.boot}"]
    if where:
        details.append(f"at {where}")
    if finding.comm:
        details.append(f"task {finding.comm}/{finding.pid} cpu {finding.cpu}")
    if finding.kernel_version:
        details.append(f"kernel {finding.kernel_version}")
    if finding.caller:
        details.append(f"caller {finding.caller}")
    lines.append("    " + ", ".join(details))
    if finding.aftermath:
        lines.append("    then: " + "; ".join(finding.aftermath[:8]) + (" ..." if len(finding.aftermath) > 8 else ""))
    lines.append(f"    signature {finding.signature}" + ("  (report corrupted)" if finding.corrupted else ""))
    return "\n".join(lines)


def scan_command(paths: List[str], as_json: bool = False, vmlinux: Optional[str] = None) -> int:
    """Scan console logs; print findings; return the exit code."""
    if not paths:
        print("kstress scan: error: no console log given", file=sys.stderr)
        return EXIT_USAGE
    if vmlinux and not os.path.isfile(vmlinux):
        _error(vmlinux, "vmlinux not found")
        return EXIT_USAGE
    results = []
    for path in paths:
        problem = _input_problem(path)
        if problem:
            _error(path, problem)
            return EXIT_USAGE
        try:
            findings = analyze_file(path, vmlinux=vmlinux)
        except SymbolizeError as exc:
            _error(vmlinux, str(exc))
            return EXIT_USAGE
        except OSError as exc:
            _error(path, exc.strerror or str(exc))
            return EXIT_USAGE
        results.extend((path, f) for f in findings)
    if as_json:
        json.dump([dict(f.to_dict(), log=path) for path, f in results], sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for path, finding in results:
            print(_human(path, finding))
        if not results:
            print("no findings")
    failing = any(not f.informational for _, f in results)
    return EXIT_FINDINGS if failing else EXIT_CLEAN


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="kstress scan", description="Find kernel crash reports in console logs.")
    parser.add_argument("logs", nargs="+", metavar="LOG")
    parser.add_argument("--json", action="store_true", help="print findings as a JSON list")
    parser.add_argument("--vmlinux", help="vmlinux with debug info, to symbolize frames")
    args = parser.parse_args(argv)
    return scan_command(args.logs, args.json, args.vmlinux)
