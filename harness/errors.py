"""Exceptions that map to kstress's exit codes.

Exit codes are chosen so that ``git bisect run kstress run ...`` works:
0 clean, 1 kernel findings, 2 usage or config error, 125 could not test.
"""

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_COULD_NOT_TEST = 125
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
# Most severe first, for a result made of several runs (kernel variants):
# findings before a usage error before "could not test", so one run that
# could not test never hides another's crash.
EXIT_SEVERITY = (EXIT_INTERRUPTED, EXIT_FINDINGS, EXIT_USAGE, EXIT_COULD_NOT_TEST, EXIT_CLEAN)


def worst_exit(codes: list[int]) -> int:
    """The most severe of ``codes`` (an unknown code counts as could-not-test; none is could-not-test)."""
    known = [c if c in EXIT_SEVERITY else EXIT_COULD_NOT_TEST for c in codes]
    return min(known, key=EXIT_SEVERITY.index) if known else EXIT_COULD_NOT_TEST


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
