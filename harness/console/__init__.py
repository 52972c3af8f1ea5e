"""Kernel console analysis: find crash reports (BUG, Oops, WARNING, KASAN, stalls...)
in a console log or dmesg, syzkaller-style titles and all."""

from .analyze import analyze_file, analyze_text
from .cli import scan_command
from .model import Finding, Frame

__all__ = ["analyze_text", "analyze_file", "scan_command", "Finding", "Frame"]
