"""Cross-stream batching: deadlines met, fairness, no stream starved, every frame accounted, streams on one generator.

The policy (``BatchCore``) runs here on a fake clock against a fake slow generator whose batch cost is a known
function of its size, in a small discrete-event simulation: no wall-clock timing is asserted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from fakes import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_f2f.frames import VideoFrame
from rt_f2f.lipsync.backends import FACE_SHAPE, MEL_SHAPE
from rt_f2f.lipsync.batcher import BatchCore
from rt_f2f.lipsync.composite import Blender
from rt_f2f.lipsync.costmodel import CostModel
from rt_f2f.lipsync.faces import FaceBox
from rt_f2f.lipsync.shared_generator import SharedGenerator
from rt_f2f.lipsync.stream import LipSyncStream

FPS = 25.0


def linear_cost(n: int) -> float:
    """A GPU-like generator: a fixed launch cost plus a little per frame, so big batches are far cheaper per frame."""
    return 0.004 + 0.0005 * n


def calibrated(max_batch: int, cost=linear_cost) -> CostModel:
    model = CostModel()
    for n in (1, max_batch):
        model.observe(n, cost(n))
    return model


def inputs(n: int, tag: float) -> tuple[np.ndarray, np.ndarray]:
    """Faces whose pixels carry ``tag``, so an output can be traced back to the frame it was made from."""
    return np.zeros((n, *MEL_SHAPE), np.float32), np.full((n, *FACE_SHAPE), tag, np.float32)


def echo(faces: np.ndarray) -> np.ndarray:
    return faces[:, :3].copy()


@dataclass
class Sim:
    core: BatchCore
    clock: FakeClock
    tickets: dict[int, list] = field(default_factory=dict)  # stream -> [(ticket, tag)]
    batch_sizes: list[int] = field(default_factory=list)


def simulate(
    n_streams: int,
    seconds: float,
    budget: float,
    max_batch: int = 32,
    cost=linear_cost,
    floods: dict[int, tuple[int, float]] | None = None,
) -> Sim:
    """Streams submit one frame each per 1/FPS (staggered); a single fake generator runs batches back to back.

    ``floods`` maps a stream to (frames, budget): that stream also submits that many frames at t=0 with that budget.
    """
    clock = FakeClock()
    core = BatchCore(max_batch, calibrated(max_batch, cost), clock, margin_s=0.0)
    sim = Sim(core, clock)
    arrivals = sorted((k / FPS + s / (FPS * n_streams), s) for s in range(n_streams) for k in range(int(seconds * FPS)))
    for s, (frames, flood_budget) in (floods or {}).items():
        tag = float(s * 10000 + 9999) / 1e6
        sim.tickets.setdefault(s, []).append((core.submit(s, *inputs(frames, tag), flood_budget, now=0.0), tag))
    i = 0
    while i < len(arrivals) or core.pending:
        while i < len(arrivals) and arrivals[i][0] <= clock.now + 1e-12:
            t, s = arrivals[i]
            tag = float(s * 10000 + i % 9999) / 1e6
            sim.tickets.setdefault(s, []).append((core.submit(s, *inputs(1, tag), t + budget, now=t), tag))
            i += 1
        batch = core.take()
        if batch is not None:
            sim.batch_sizes.append(len(batch))
            clock.now += cost(len(batch))
            core.finish(batch, echo(batch.faces))
            continue
        wait = core.wait_time()
        nxt = arrivals[i][0] if i < len(arrivals) else np.inf
        clock.now = min(nxt, clock.now + wait) if wait is not None else nxt
    return sim


def all_tickets(sim: Sim):
    return [t for pairs in sim.tickets.values() for t, _ in pairs]


def test_cost_model_learns_interpolates_and_extrapolates():
    model = CostModel(fixed=0.01, per_frame=0.001)
    assert model.estimate(4) == pytest.approx(0.014)  # nothing seen: the prior
    model.observe(8, 0.02)
    assert model.estimate(4) == pytest.approx(0.02)  # below the smallest seen: no cheaper than it
    assert model.estimate(16) == pytest.approx(0.04)  # one size seen: proportional above it
    model.observe(32, 0.05)
    assert model.estimate(20) == pytest.approx(0.035)  # between: interpolated
    assert model.estimate(64) == pytest.approx(0.09)  # beyond: the last slope
    model.observe(8, 0.03)
    assert model.estimate(8) == pytest.approx(0.023)  # a running average per size


def test_under_capacity_every_frame_is_rendered_by_its_deadline_in_shared_batches():
    sim = simulate(n_streams=20, seconds=2.0, budget=0.08)
    stats = sim.core.stats
    assert stats.submitted == 20 * 50
    assert stats.rendered == stats.submitted and stats.skipped_late == 0 and stats.late == 0
    for ticket in all_tickets(sim):
        assert ticket.ready and ticket.finished <= ticket.deadline + 1e-9
    # 20 streams offer 500 frames/s; one-at-a-time would need 500 * 4.5 ms = 2.25 s per second: batching is a must
    assert stats.mean_batch > 5
    assert max(sim.batch_sizes) <= 32


def test_outputs_go_back_to_the_frame_they_were_made_from():
    sim = simulate(n_streams=5, seconds=0.5, budget=0.1)
    for pairs in sim.tickets.values():
        for ticket, tag in pairs:
            assert ticket.rendered.all()
            assert np.all(ticket.outputs == np.float32(tag))


def test_overload_skips_frames_fairly_never_renders_late_and_accounts_for_every_frame():
    # capacity at full batches of 32: 32 / 20 ms = 1600 frames/s; 100 streams offer 2500
    sim = simulate(n_streams=100, seconds=1.0, budget=0.08)
    stats = sim.core.stats
    assert stats.skipped_late > 0 and stats.rendered > 0
    assert stats.late == 0  # a frame is rendered by its deadline or not at all
    assert stats.submitted == stats.rendered + stats.skipped_late + stats.failed
    assert sim.core.pending == 0 and sim.core.in_flight == 0
    rendered = [c.rendered / c.submitted for c in stats.streams.values()]
    assert min(rendered) > 0.45 and max(rendered) - min(rendered) < 0.15
    for ticket in all_tickets(sim):
        assert ticket.ready
        if ticket.rendered.all():
            assert ticket.finished <= ticket.deadline + 1e-9


def test_a_flooding_stream_does_not_starve_the_others():
    # stream 0 dumps 600 frames at once with a generous deadline; nine live streams keep their 80 ms budget
    sim = simulate(n_streams=10, seconds=1.0, budget=0.08, floods={0: (600, 0.5)})
    counts = sim.core.stats.streams
    for s in range(1, 10):
        assert counts[s].skipped_late == 0 and counts[s].rendered == counts[s].submitted
    assert counts[0].rendered > 0  # the flood is served in the room left over
    assert sim.core.stats.submitted == sim.core.stats.rendered + sim.core.stats.skipped_late


def test_equal_share_when_more_frames_wait_than_fit():
    clock = FakeClock()
    core = BatchCore(8, calibrated(8), clock)
    core.submit("flood", *inputs(40, 0.5), deadline=0.5)
    for s in ("a", "b", "c"):
        core.submit(s, *inputs(4, 0.1), deadline=0.6)  # later deadlines than the flood's
    batch = core.take()
    assert batch is not None and len(batch) == 8
    taken = {}
    for it in batch.items:
        taken[it.ticket.stream] = taken.get(it.ticket.stream, 0) + 1
    assert taken == {"flood": 2, "a": 2, "b": 2, "c": 2}


def test_waits_to_fill_a_batch_until_the_latest_safe_start():
    clock = FakeClock()
    core = BatchCore(32, calibrated(32), clock, margin_s=0.0)
    core.submit("a", *inputs(1, 0.1), deadline=0.1)
    assert core.take() is None
    # latest start = deadline - cost(1)
    assert core.wait_time() == pytest.approx(0.1 - linear_cost(1))
    clock.now = 0.05
    core.submit("b", *inputs(3, 0.1), deadline=0.15)
    assert core.wait_time() == pytest.approx(0.1 - linear_cost(4) - 0.05)
    clock.now = 0.1 - linear_cost(4)
    batch = core.take()
    assert batch is not None and len(batch) == 4


def test_a_full_batch_starts_at_once_and_max_wait_caps_the_wait():
    clock = FakeClock()
    core = BatchCore(4, calibrated(4), clock)
    core.submit("a", *inputs(4, 0.1), deadline=10.0)
    assert core.wait_time() == 0 and len(core.take()) == 4
    capped = BatchCore(4, calibrated(4), clock, max_wait_s=0.01)
    capped.submit("a", *inputs(1, 0.1), deadline=10.0)
    assert capped.wait_time() == pytest.approx(0.01)


def test_a_failed_batch_reaches_its_tickets_and_is_counted():
    clock = FakeClock()
    core = BatchCore(4, calibrated(4), clock)
    ticket = core.submit("a", *inputs(4, 0.1), deadline=1.0)
    core.fail(core.take(), RuntimeError("CUDA out of memory"))
    assert ticket.ready and isinstance(ticket.error, RuntimeError)
    assert core.stats.failed == 4 and ticket.skipped == 4
    with pytest.raises(ValueError, match="finite"):
        core.submit("a", *inputs(1, 0.1), deadline=float("inf"))


# --------------------------------------------------------------------------------- streams on a shared generator


class FixedTracker:
    box = FaceBox(16, 8, 48, 56)

    def update(self, image: np.ndarray, t: float | None = None) -> FaceBox:
        return self.box


class BrightGenerator:
    """A slow fake generator that paints every face white (so a rendered frame is easy to tell apart)."""

    name = "bright"
    max_batch = 16

    def __init__(self, seconds: float = 0.002) -> None:
        self.seconds = seconds
        self.fail = False
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        with self.lock:
            self.batches.append(len(mel))
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("device lost")
        return np.ones((len(mel), 3, 96, 96), np.float32)


def frame(i: int, value: int = 60) -> VideoFrame:
    return VideoFrame(image=np.full((64, 64, 3), value, np.uint8), pts=i / FPS, index=i)


def stream_on(client) -> LipSyncStream:
    blender = Blender(colour_match=False)  # keep the generator's white visible
    s = LipSyncStream(client, fps=FPS, batch_size=1, max_latency_s=0.3, tracker=FixedTracker(), blender=blender)
    s.push_audio(np.zeros(16000 * 2, np.float32), 0.0)  # translated speech arrives ahead of the frames
    return s


def test_many_streams_share_one_generator_in_order_with_every_frame_rendered():
    backend = BrightGenerator()
    with SharedGenerator(backend, max_batch=16) as shared:
        streams = [stream_on(shared.client(budget_s=0.2, stream=k, required=True)) for k in range(4)]
        out: list[list[VideoFrame]] = [[] for _ in streams]
        for i in range(20):
            for k, s in enumerate(streams):
                out[k] += s.push_video(frame(i))
        for k, s in enumerate(streams):
            out[k] += s.flush()
    assert sum(backend.batches[6:]) == 80  # after calibration: every frame exactly once
    assert max(backend.batches[6:]) > 1  # frames of several streams met in one batch
    for k, s in enumerate(streams):
        assert [f.index for f in out[k]] == list(range(20))
        assert s.stats.frames_out == 20 and s.stats.frames_skipped_late == 0
        for f in out[k]:
            x1, y1, x2, y2 = FixedTracker.box.ints()
            assert f.image[y1:y2, x1:x2].mean() > 100  # painted by the generator
            assert np.all(f.image[:, x2 + 2 :] == 60)  # untouched outside the face
    assert shared.stats.rendered == 80 and shared.stats.submitted == 80
    counts = streams[0].backend.close()  # a finished stream leaves the per-stream table; the totals stay
    assert counts.rendered == 20 and 0 not in shared.stats.streams and shared.stats.rendered == 80


def test_a_frame_skipped_as_late_goes_out_unchanged_and_is_counted():
    clock = FakeClock()
    core = BatchCore(4, calibrated(4), clock)

    class Client:
        name, max_batch = "fake", 4

        def submit(self, mel, faces):
            return core.submit("s", mel, faces, clock() + 0.05)

    s = stream_on(Client())
    assert s.push_video(frame(0)) == [] and s.push_video(frame(1)) == []
    batch = core.take(now=0.05 - linear_cost(2))
    clock.now = batch.started + linear_cost(2)
    core.finish(batch, np.ones((2, 3, 96, 96), np.float32))
    out = s.push_video(frame(2))
    assert [f.index for f in out] == [0, 1]
    clock.now += 1.0  # the generator was busy elsewhere: frame 2 can no longer make it
    assert core.take() is None and core.stats.skipped_late == 1
    out += s.poll()
    assert [f.index for f in out] == [0, 1, 2]
    assert out[0].image.mean() > 60 and np.all(out[2].image == 60)
    assert s.stats.frames_skipped_late == 1 and s.stats.frames_out == 3


def test_a_generator_error_reaches_the_stream_and_the_generator_serves_on():
    backend = BrightGenerator()
    with SharedGenerator(backend, max_batch=4) as shared:
        backend.fail = True
        s = stream_on(shared.client(budget_s=0.2, required=True))
        s.push_video(frame(0))
        with pytest.raises(RuntimeError, match="device lost"):
            s.flush()
        assert shared.stats.failed == 1
        out = s.flush()  # the error was reported once; the frame then goes out as it came, counted
        assert [f.index for f in out] == [0] and np.all(out[0].image == 60) and s.stats.frames_failed == 1
        backend.fail = False
        ok = stream_on(shared.client(budget_s=0.2, required=True))
        ok.push_video(frame(0))
        assert [f.index for f in ok.flush()] == [0]


def test_the_driver_widens_its_margin_by_how_late_it_wakes():
    with SharedGenerator(BrightGenerator(), max_batch=4, calibrate=False, margin_s=0.002) as shared:
        shared.learn_wake(0.03)
        assert shared.core.margin_s == pytest.approx(0.032)
        shared.learn_wake(0.0)  # punctual wake-ups let it shrink slowly
        assert shared.core.margin_s == pytest.approx(0.002 + 0.03 * 0.98)
        shared.learn_wake(5.0)  # one stall (a GC pause, a swapped page) does not push it past the cap
        assert shared.core.margin_s == pytest.approx(0.052)


def test_closing_skips_pending_frames_and_counts_them():
    backend = BrightGenerator()
    shared = SharedGenerator(backend, max_batch=4, calibrate=False)
    shared.core.cost.observe(1, 0.001)
    ticket = shared.submit("a", *inputs(2, 0.1), deadline=shared.clock() + 60.0)  # would wait almost a minute
    shared.close()
    assert ticket.ready and ticket.skipped == 2 and shared.stats.skipped_late == 2
    with pytest.raises(RuntimeError, match="closed"):
        shared.submit("a", *inputs(1, 0.1), deadline=shared.clock() + 1.0)


async def test_an_event_loop_awaits_a_ticket_without_blocking():
    gate = threading.Event()

    class GatedGenerator(BrightGenerator):
        def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
            gate.wait(timeout=30)
            return super().infer(mel, faces)

    with SharedGenerator(GatedGenerator(), max_batch=4, calibrate=False) as shared:
        ticket = shared.submit("a", *inputs(4, 0.1), deadline=shared.clock() + 60.0)  # a full batch: runs at once
        waiter = asyncio.create_task(ticket.wait_async())
        for _ in range(5):
            await asyncio.sleep(0)  # the loop runs on while the generator is busy
        assert not waiter.done()
        gate.set()
        assert await asyncio.wait_for(waiter, timeout=30) is ticket
    assert ticket.rendered.all()
    seen = []
    ticket.add_done_callback(seen.append)  # already ready: called at once
    assert seen == [ticket]


@settings(max_examples=15, deadline=None)
@given(
    n_streams=st.integers(1, 20),
    budget=st.floats(0.03, 0.2),
    fixed=st.floats(0.0005, 0.02),
    per_frame=st.floats(0.0, 0.002),
    max_batch=st.integers(1, 64),
)
def test_any_load_every_frame_is_accounted_and_none_is_rendered_late(n_streams, budget, fixed, per_frame, max_batch):
    def cost(n: int) -> float:
        return fixed + per_frame * n

    sim = simulate(n_streams, seconds=0.3, budget=budget, max_batch=max_batch, cost=cost)
    stats = sim.core.stats
    assert stats.submitted == n_streams * 7
    assert stats.submitted == stats.rendered + stats.skipped_late and stats.failed == 0
    assert stats.late == 0 and sim.core.pending == 0 and sim.core.in_flight == 0
    assert all(t.ready for t in all_tickets(sim))
    assert max(sim.batch_sizes, default=0) <= max_batch
