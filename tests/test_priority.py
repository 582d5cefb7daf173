"""Background worker threads yield the cores to the speech path."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from rt_f2f.priority import lower_this_thread, raise_process_to, this_thread_niceness


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux semantics")
def test_lowering_one_thread_leaves_the_others_alone() -> None:
    seen: dict[str, int] = {}

    def worker() -> None:
        assert lower_this_thread(5)
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["worker"] == min(19, before + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux semantics")
def test_a_niced_process_is_brought_back_to_the_event_priority_or_says_what_is_left() -> None:
    """A Ray worker starts niced (+15); a translator brings all its threads back to the event process's niceness.
    Lowering a niceness needs CAP_SYS_NICE: without it, the threads keep theirs and the answer says so."""
    lowered, read, seen = threading.Event(), threading.Event(), {}

    def worker() -> None:
        assert lower_this_thread(5)
        lowered.set()
        read.wait(10)
        seen["worker"] = this_thread_niceness()

    before = this_thread_niceness()
    t = threading.Thread(target=worker)
    t.start()
    assert lowered.wait(10)
    left = raise_process_to(before)
    read.set()
    t.join()
    privileged = os.geteuid() == 0
    assert left == (before if privileged else min(19, before + 5))
    assert seen["worker"] == left
    assert this_thread_niceness() == before  # a thread already there is left alone
