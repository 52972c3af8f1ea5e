"""Exceptions that map to kstress's exit codes.

Exit codes are chosen so that ``git bisect run kstress run ...`` works:
0 clean, 1 kernel findings, 2 usage or config error, 125 could not test.
"""

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_COULD_NOT_TEST = 125
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class KstressError(Exception):
    """Base class: a one-line message for the user, and an exit code."""

    exit_code = EXIT_COULD_NOT_TEST


class UsageError(KstressError):
    """Bad input from the user: a missing file, a YAML typo, a bad option."""

    exit_code = EXIT_USAGE


class CouldNotTest(KstressError):
    """The kernel could not be tested: build failure, QEMU failure, host problem."""

    exit_code = EXIT_COULD_NOT_TEST


class KernelHang(KstressError):
    """The kernel under test stopped answering (no ready marker, or silence):
    that is a finding about the kernel, not our trouble."""

    exit_code = EXIT_FINDINGS
