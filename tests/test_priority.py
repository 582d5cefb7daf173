"""Background worker threads yield the cores to the speech path."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from rt_f2f.priority import lower_this_thread


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
