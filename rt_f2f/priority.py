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


def raise_process_to(niceness: int) -> int:
    """Bring every thread of this process whose niceness is above ``niceness`` down to it; returns the highest
    niceness left (``niceness`` when all of them made it).

    A Ray worker starts niced by 15 (Ray's ``worker_niceness``, so Ray's own daemons win), which on a busy node
    starves work on the speech path; lowering a niceness needs CAP_SYS_NICE (or RLIMIT_NICE), so without it the
    threads keep theirs and the caller reports what is left."""
    if not hasattr(os, "setpriority"):
        return niceness
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: niceness is per process there
        tids = [0]
    left = niceness
    for tid in tids:
        try:
            current = os.getpriority(os.PRIO_PROCESS, tid)
        except OSError:  # the thread ended meanwhile
            continue
        if current <= niceness:
            continue
        try:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
        except OSError as exc:
            log.debug("cannot raise thread %s from nice %d to %d: %s", tid, current, niceness, exc)
            left = max(left, current)
    return left


def this_thread_niceness() -> int:
    if not hasattr(os, "getpriority"):
        return 0
    tid = threading.get_native_id() if hasattr(threading, "get_native_id") else 0
    try:
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return os.getpriority(os.PRIO_PROCESS, 0)
