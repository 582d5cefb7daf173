"""Face detection, tracking and smoothing: real detector on a real face photo, scripted detectors for the logic."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pytest
import torch
from lipsync_fixtures import write_random_checkpoint
from media_fixtures import face_photo, moving_frames

from rt_f2f.errors import ModelFormatError, ModelMissingError
from rt_f2f.lipsync.detectors import MediaPipeDetector, load_detector
from rt_f2f.lipsync.facebox import FaceBox
from rt_f2f.lipsync.faces import FaceTracker, detect_static
from rt_f2f.lipsync.one_euro import OneEuroFilter
from rt_f2f.lipsync.s3fd import S3FD, S3FDDetector, decode, load_s3fd, nms


@pytest.fixture(scope="module")
def mediapipe_detector():
    det = MediaPipeDetector()
    yield det
    det.close()


class ScriptedDetector:
    """Returns the boxes a test scripts per call, and counts calls (what the tracker logic is checked against)."""

    name = "scripted"

    def __init__(self, script) -> None:
        self.script = script
        self.calls = 0

    def detect(self, images: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        out = []
        for _ in images:
            out.append(self.script(self.calls))
            self.calls += 1
        return out

    def close(self) -> None:
        pass


def blank(size: int = 128) -> np.ndarray:
    return np.full((size, size, 3), 128, np.uint8)


# -- boxes --------------------------------------------------------------------------------------------------


def test_box_iou_and_padding_clip_to_the_frame():
    a = FaceBox(10, 10, 30, 30)
    assert a.iou(a) == pytest.approx(1.0)
    assert a.iou(FaceBox(20, 10, 40, 30)) == pytest.approx(200 / 600)
    assert a.iou(FaceBox(50, 50, 60, 60)) == 0.0
    padded = FaceBox(5.4, 3.6, 40.2, 95.0).padded((10, 10, 2, 3), width=42, height=100)
    assert padded.ints() == (3, 0, 42, 100)  # top pad clipped at 0, right and bottom at the frame size
    assert FaceBox.from_array(a.as_array()) == FaceBox(10, 10, 30, 30)


# -- mediapipe on a real face ---------------------------------------------------------------------------------


def test_mediapipe_finds_the_face_in_the_photo_and_none_on_a_wall(mediapipe_detector):
    photo = face_photo(256)
    found, wall = mediapipe_detector.detect([photo, blank(256)])
    assert wall == []
    assert len(found) == 1
    box = found[0]
    # the astronaut's face: centre near (132, 85) in this crop, roughly 80 px across
    assert abs(box.center[0] - 132) < 15 and abs(box.center[1] - 85) < 15
    assert 55 < box.width < 110 and box.score > 0.7


def test_static_face_repeats_the_padded_box(mediapipe_detector):
    photo = face_photo(256)
    static = detect_static(mediapipe_detector, photo, pads=(0, 10, 0, 0))
    raw = mediapipe_detector.detect([photo])[0][0]
    assert static.box is not None and static.box.y2 == min(256, round(raw.y2 + 10))
    assert [static.update(photo) for _ in range(3)] == [static.box] * 3
    assert detect_static(mediapipe_detector, blank()).box is None


def test_tracker_follows_a_moving_face_with_few_detector_runs(mediapipe_detector):
    frames = moving_frames(40, 256)
    tracker = FaceTracker(mediapipe_detector, detect_every=10)
    boxes = [tracker.update(f, i / 25) for i, f in enumerate(frames)]
    assert all(b is not None for b in boxes)
    assert tracker.stats.detector_runs <= 5  # every 10th frame; optical flow carried the rest
    assert tracker.stats.flow_steps >= 30
    # the photo drifts 0.8 px/frame to the right (plus a slight zoom): the box centre must drift with it
    fresh = [mediapipe_detector.detect([f])[0][0] for f in (frames[0], frames[-1])]
    expected_shift = fresh[1].center[0] - fresh[0].center[0]
    tracked_shift = (boxes[-1].x1 + boxes[-1].x2) / 2 - (boxes[0].x1 + boxes[0].x2) / 2
    assert expected_shift > 20
    assert abs(tracked_shift - expected_shift) < 8


def test_faceless_frames_yield_none_and_are_counted(mediapipe_detector):
    frames = moving_frames(20, 256, faceless=frozenset({5, 6, 7, 15}))
    tracker = FaceTracker(mediapipe_detector, detect_every=5)
    boxes = tracker.track(frames)
    assert [i for i, b in enumerate(boxes) if b is None] == [5, 6, 7, 15]
    assert tracker.stats.without_face == 4 and tracker.stats.faceless_indices == [5, 6, 7, 15]
    assert tracker.stats.with_face == 16
    assert tracker.stats.tracks_started >= 2  # the face came back after the gap and was picked up again


# -- tracking logic with a scripted detector --------------------------------------------------------------------


def textured(size: int = 160, seed: int = 0) -> np.ndarray:
    """A still textured image: optical flow sees zero motion, so boxes come from the script alone."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (5, 5), 1.0)


def test_smoothing_reduces_jitter_of_a_still_face():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 3.0, (60, 4))

    def script(call: int) -> list[FaceBox]:
        n = noise[call % len(noise)]
        return [FaceBox(50 + n[0], 40 + n[1], 110 + n[2], 100 + n[3])]

    image = textured()
    raw = FaceTracker(ScriptedDetector(script), detect_every=1, smooth=False, pads=(0, 0, 0, 0))
    smooth = FaceTracker(ScriptedDetector(script), detect_every=1, smooth=True, pads=(0, 0, 0, 0))
    raw_x = np.array([raw.update(image).x1 for _ in range(60)], float)
    smooth_x = np.array([smooth.update(image).x1 for _ in range(60)], float)
    assert smooth_x[10:].std() < 0.5 * raw_x[10:].std()
    assert abs(smooth_x[10:].mean() - 50) < 2


def test_one_euro_follows_fast_motion_with_little_lag():
    f = OneEuroFilter(min_cutoff=1.0, beta=2.0)
    xs = [f(np.array([100.0 + 80.0 * t]), t, scale=60.0)[0] for t in np.arange(0, 1.0, 0.04)]
    # a face moving 80 px/s (1.3 box widths a second): after a second the filter trails by under 8 px
    assert 100 + 80 * 0.96 - xs[-1] < 8


def test_a_single_outlier_detection_is_rejected_and_a_confirmed_jump_followed():
    near, far = FaceBox(40, 40, 100, 100), FaceBox(10, 90, 50, 130)
    script_list = [near, near, far, near, near, far, far, far]
    image = textured()
    tracker = FaceTracker(ScriptedDetector(lambda c: [script_list[c]]), detect_every=1, smooth=False, pads=(0, 0, 0, 0))
    boxes = [tracker.update(image) for _ in script_list]
    assert boxes[2] == FaceBox(40, 40, 100, 100, 1.0)  # the lone jump was treated as an outlier
    assert tracker.stats.outliers_rejected >= 2
    assert boxes[6].ints() == far.ints() and boxes[7].ints() == far.ints()  # a second agreeing detection moved it


def test_lost_track_triggers_detection_off_schedule():
    face = FaceBox(40, 40, 100, 100)
    script_list = [[face], [], [face]]
    det = ScriptedDetector(lambda c: script_list[c])
    tracker = FaceTracker(det, detect_every=50, pads=(0, 0, 0, 0))
    assert tracker.update(textured()) is not None and det.calls == 1
    # a featureless frame: optical flow cannot follow, so the detector runs although it is not due; it finds nothing
    assert tracker.update(blank(160)) is None and det.calls == 2
    # with no track the next frame is detected at once, and the face is back
    assert tracker.update(textured()) is not None and det.calls == 3
    assert tracker.stats.without_face == 1 and tracker.stats.tracks_started == 2


def test_the_nearest_face_continues_the_track():
    a, b = FaceBox(10, 10, 60, 60, 0.99), FaceBox(90, 90, 150, 150, 0.9)
    image = textured()
    det = ScriptedDetector(lambda c: [b] if c == 0 else [a, b])  # a higher-scoring second face appears
    tracker = FaceTracker(det, detect_every=1, smooth=False, pads=(0, 0, 0, 0))
    assert [tracker.update(image).ints() for _ in range(3)] == [b.ints()] * 3


# -- S3FD ---------------------------------------------------------------------------------------------------


def test_s3fd_state_dict_has_the_released_layout():
    state = S3FD().state_dict()
    assert len(state) == 65  # 31 convolutions (weight + bias) and 3 L2Norm scales
    expected = {
        "conv1_1.weight": (64, 3, 3, 3),
        "conv3_3_norm.weight": (256,),
        "conv4_3_norm.weight": (512,),
        "conv5_3_norm.weight": (512,),
        "fc6.weight": (1024, 512, 3, 3),
        "fc7.weight": (1024, 1024, 1, 1),
        "conv6_2.weight": (512, 256, 3, 3),
        "conv7_2.weight": (256, 128, 3, 3),
        "conv3_3_norm_mbox_conf.weight": (4, 256, 3, 3),
        "conv3_3_norm_mbox_loc.weight": (4, 256, 3, 3),
        "fc7_mbox_conf.weight": (2, 1024, 3, 3),
        "conv7_2_mbox_loc.bias": (4,),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert float(state["conv3_3_norm.weight"][0]) == 10.0  # the L2Norm initial scales
    assert float(state["conv5_3_norm.weight"][0]) == 5.0


def test_s3fd_round_trips_a_state_dict_and_detects(tmp_path):
    torch.manual_seed(0)
    net = S3FD()
    path = tmp_path / "s3fd.pth"
    torch.save(net.state_dict(), path)
    loaded = load_s3fd(path)
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        outputs = loaded(torch.zeros(1, 3, 128, 128))
    # fc6 keeps the public port's padding 3 without dilation, so fc7's map is 4 cells wider than stride 32 implies
    # (8x8, not 4x4, at 128 px); the released weights were used that way, so it is kept
    shapes = [tuple(o.shape) for o in outputs[0::2]]
    assert shapes == [(1, 2, 32, 32), (1, 2, 16, 16), (1, 2, 8, 8), (1, 2, 8, 8), (1, 2, 4, 4), (1, 2, 2, 2)]
    assert all(o.shape[1] == 4 for o in outputs[1::2])
    detector = S3FDDetector(loaded, max_side=96, score_threshold=0.0)
    results = detector.detect([face_photo(128), face_photo(128)])
    assert len(results) == 2
    for boxes in results:
        assert all(isinstance(b, FaceBox) and 0 <= b.x1 <= b.x2 <= 128 and 0 <= b.y1 <= b.y2 <= 128 for b in boxes)
        assert [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)


def test_s3fd_refuses_other_checkpoints(tmp_path):
    with pytest.raises(ModelFormatError, match="S3FD"):
        load_s3fd(write_random_checkpoint(tmp_path / "wav2lip.pth"))
    with pytest.raises(ModelMissingError):
        load_s3fd(tmp_path / "absent.pth")
    with pytest.raises(ModelMissingError):
        load_detector("s3fd", s3fd_path=tmp_path / "absent.pth")


def test_s3fd_decode_places_anchors_and_nms_keeps_the_best():
    # one confident cell on the stride-4 map at (row 2, col 3) with zero regression: the box is the anchor itself
    outputs = []
    for level in range(6):
        side = 32 >> level
        cls = torch.zeros(1, 2, side, side)
        cls[:, 0] = 5.0  # background
        if level == 0:
            cls[0, 1, 2, 3], cls[0, 0, 2, 3] = 5.0, -5.0
        outputs += [cls, torch.zeros(1, 4, side, side)]
    (boxes,) = decode(outputs)
    assert boxes.shape == (1, 5)
    np.testing.assert_allclose(boxes[0, :4], [14 - 8, 10 - 8, 14 + 8, 10 + 8])
    assert boxes[0, 4] > 0.99
    cand = np.array([[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.95], [50, 50, 60, 60, 0.6], [0, 0, 5, 5, 0.3]], np.float32)
    kept = nms(cand, iou_threshold=0.3, score_threshold=0.5)
    np.testing.assert_allclose(kept[:, 4], [0.95, 0.6])


def test_auto_detector_uses_s3fd_only_when_its_weights_are_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("RT_F2F_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RT_F2F_MODEL_S3FD", raising=False)
    det = load_detector("auto")
    assert det.name == "mediapipe"
    det.close()
    weights = tmp_path / "s3fd.pth"
    torch.save(S3FD().state_dict(), weights)
    monkeypatch.setenv("RT_F2F_MODEL_S3FD", str(weights))
    assert load_detector("auto").name == "s3fd"
