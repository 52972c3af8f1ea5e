"""When the guest dies, hangs or goes silent: a kernel finding or our error?

A silent guest or one that never became ready is a hang: the kernel's fault.
A dead QEMU is decided only once the console is analysed: if a report there
explains the death (a panic after an oops), that finding is the failure; a
panic or reboot with no recognised report is still the kernel's; anything
else is QEMU's trouble, our error.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.guest.machine import BootTimeout, GuestDied, GuestError, GuestSilent
from harness.run.record import CaseResult, GuestEvent


@dataclass
class _Death:
    case: CaseResult
    exc: GuestDied
    console_tail: str


class GuestTrouble:
    def __init__(self, events: list[GuestEvent]):
        self.events = events  # the run record's guest_events
        self._death: _Death | None = None

    def record(self, case: CaseResult, exc: GuestError, console_tail: str) -> None:
        self.events.append(GuestEvent(case.name, type(exc).__name__, str(exc)))
        if isinstance(exc, GuestSilent):
            case.fail(f"hang: guest silent during {case.name}", f"{exc}\n\nconsole tail:\n{console_tail}", "hang")
        elif isinstance(exc, BootTimeout):
            case.fail(f"boot: no ready marker ({exc})", f"console tail:\n{console_tail}", "hang")
        elif isinstance(exc, GuestDied):
            self._death = _Death(case, exc, console_tail)
        else:
            case.error(str(exc), f"console tail:\n{console_tail}")

    def settle(self) -> None:
        """Call after the console's findings are attributed."""
        death, self._death = self._death, None
        if death is None or death.case.status == "failure":
            return  # nothing pending, or the console explains the death
        tail = death.console_tail
        if "reboot" in str(death.exc).lower() or "panic" in tail.lower():
            death.case.fail(f"kernel died during {death.case.name} without a recognised report",
                            f"{death.exc}\n\nconsole tail:\n{tail}", "kernel")
        else:
            death.case.error(f"QEMU died: {death.exc}", f"console tail:\n{tail}")
