"""Thread priorities: work off the critical path yields the cores to work on it.

On two cores ASR, TTS and voice conversion decide when the listener hears the translation; enrolling the speaker's
voice profile and re-rendering mouths do not (a late mouth is skipped, never waited for). Their worker threads run
at a lower scheduling priority (a higher nice value, per thread on Linux), so when everything wants a core at once
the speech path gets it first. Elsewhere, or without permission, the call does nothing: priority is an optimisation,
never a requirement.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

BACKGROUND_NICE = 10  # added to the process's niceness for background worker threads


def lower_this_thread(increment: int = BACKGROUND_NICE) -> bool:
    """Make the calling thread yield to the others; True if the priority changed."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + increment))
    except OSError as exc:  # not Linux's per-thread semantics, or not permitted: run at normal priority
        log.debug("cannot lower thread priority: %s", exc)
        return False
    return True
