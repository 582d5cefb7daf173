"""``rt-f2f lipsync`` (the file command) against a faithful re-creation of the original Wav2Lip inference loop.

Both run in the same process on the same input with the same loaded generator backend and the same face detector
(mediapipe here; S3FD when its weights are installed), so the ratio isolates the pipeline:

- baseline = the original ``inference.py``: decode every frame into memory, detect the face on every frame (in
  batches of ``face_det_batch_size``), average boxes over a 5-frame window, run the generator in batches of 128,
  paste the resized 96x96 output over the whole box (a hard rectangle), write an intermediate AVI (DIVX, as the
  original's cv2.VideoWriter), then re-encode it to H.264 and mux the audio (the original shells out to ffmpeg;
  here PyAV does the same two-pass work).
- rt-f2f = ``lipsync_file``: streamed decode, detection every 5th frame with optical-flow tracking between,
  One-Euro smoothing, feathered colour-matched paste, H.264 + AAC written once, atomically.

Random-weight checkpoints make the generator's cost real but its output meaningless: this measures speed only.
Usage: ``python -m benchmarks.bench_lipsync_file [--seconds 8] [--size 384] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _build_media(folder: Path, seconds: float, size: int, fps: float) -> tuple[Path, Path]:
    """A talking clip of a real face (moving a little) and real speech of the same length (tests' media)."""
    sys.path.insert(0, str(TESTS))
    try:
        from media_fixtures import LIBRIVOX, SPEECH_RATE, moving_frames
    finally:
        sys.path.remove(str(TESTS))
    from rt_f2f.audio import read_audio, write_wav
    from rt_f2f.video import write_video

    clips = sorted(LIBRIVOX.parent.glob("*.wav"))
    speech = np.concatenate([read_audio(c, SPEECH_RATE) for c in clips])
    need = int(seconds * SPEECH_RATE)
    speech = np.tile(speech, math.ceil(need / speech.size))[:need]
    audio = write_wav(folder / "speech.wav", speech, SPEECH_RATE)
    video = folder / "face.mp4"
    write_video(video, moving_frames(int(round(seconds * fps)), size), fps)
    return video, audio


def _checkpoint(folder: Path) -> Path:
    sys.path.insert(0, str(TESTS))
    try:
        from lipsync_fixtures import write_random_checkpoint
    finally:
        sys.path.remove(str(TESTS))
    return write_random_checkpoint(folder / "wav2lip_random.pth")


def original_loop(
    backend: Any,
    detector: Any,
    face: Path,
    audio: Path,
    outfile: Path,
    batch_size: int = 128,
    face_det_batch_size: int = 16,
    pads: tuple[int, int, int, int] = (0, 10, 0, 0),
) -> dict[str, float]:
    """The original inference.py's loop, step for step, with its hard paste and two-pass encode."""
    import cv2

    from rt_f2f.audio import read_audio
    from rt_f2f.lipsync.composite import build_input, output_to_rgb
    from rt_f2f.lipsync.mel import frame_count, mel_chunks, melspectrogram
    from rt_f2f.video import VideoWriter, probe_video, read_frames

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    fps = probe_video(face).fps
    full_frames = [f.image for f in read_frames(face)]
    wav = read_audio(audio, 16000)
    mel = melspectrogram(wav)
    n = frame_count(mel.shape[1], fps)
    chunks = mel_chunks(mel, fps, n)
    full_frames = full_frames[:n]
    timings["read_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    boxes = []
    for i in range(0, len(full_frames), face_det_batch_size):
        for image, found in zip(
            full_frames[i : i + face_det_batch_size],
            detector.detect(full_frames[i : i + face_det_batch_size]),
            strict=True,
        ):
            if not found:
                raise ValueError("Face not detected! Ensure the video contains a face in all the frames.")
            r = found[0]
            h, w = image.shape[:2]
            boxes.append(
                [max(0, r.x1 - pads[2]), max(0, r.y1 - pads[0]), min(w, r.x2 + pads[3]), min(h, r.y2 + pads[1])]
            )
    boxes_arr = np.array(boxes, dtype=np.float64)
    for i in range(len(boxes_arr)):  # get_smoothened_boxes(T=5), future frames included
        window = boxes_arr[len(boxes_arr) - 5 :] if i + 5 > len(boxes_arr) else boxes_arr[i : i + 5]
        boxes_arr[i] = np.mean(window, axis=0)
    coords = [tuple(int(v) for v in b) for b in boxes_arr]
    timings["detect_s"] = time.perf_counter() - t

    t = time.perf_counter()
    infer = 0.0
    avi = outfile.with_suffix(".avi")
    h, w = full_frames[0].shape[:2]
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"DIVX"), fps, (w, h))
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        frames = [full_frames[i % len(full_frames)].copy() for i in idx]
        cs = [coords[i % len(full_frames)] for i in idx]
        faces = np.stack(
            [cv2.resize(f[y1:y2, x1:x2], (96, 96)) for f, (x1, y1, x2, y2) in zip(frames, cs, strict=True)]
        )
        ti = time.perf_counter()
        pred = output_to_rgb(backend.infer(chunks[idx][:, None], build_input(faces)))
        infer += time.perf_counter() - ti
        for f, p, (x1, y1, x2, y2) in zip(frames, pred, cs, strict=True):
            f[y1:y2, x1:x2] = cv2.resize((p * 255.0).astype(np.uint8), (x2 - x1, y2 - y1))
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    timings["generate_s"] = time.perf_counter() - t
    timings["infer_s"] = infer

    t = time.perf_counter()  # the original's `ffmpeg -i audio -i result.avi outfile`
    with VideoWriter(outfile, fps, wav, 16000) as out:
        for f in read_frames(avi):
            out.write(f.image)
    avi.unlink()
    timings["encode_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    timings["frames"] = n
    return timings


def s3fd_ms_per_frame(size: int, repeat: int = 3) -> float:
    """S3FD's forward + decode time on one frame of this size (random weights: the cost is real, boxes are not).

    The original detects with S3FD on every frame; its weights are not installed here, so the comparison above runs
    both pipelines with mediapipe and this figure says what S3FD detection would add per detector run.
    """
    import torch

    from rt_f2f.lipsync.s3fd import S3FD, S3FDDetector

    torch.manual_seed(0)
    detector = S3FDDetector(S3FD().eval())
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    detector.detect([image])
    t = time.perf_counter()
    for _ in range(repeat):
        detector.detect([image])
    return 1000 * (time.perf_counter() - t) / repeat


def measure(
    seconds: float = 8.0,
    size: int = 384,
    fps: float = 25.0,
    batch_size: int = 128,
    backend_name: str = "torch",
    repeat: int = 1,
) -> dict[str, Any]:
    from rt_f2f.lipsync.backends import load_backend
    from rt_f2f.lipsync.detectors import load_detector
    from rt_f2f.lipsync.filerun import lipsync_file

    with tempfile.TemporaryDirectory(prefix="rt-f2f-bench-lipsync-") as tmp:
        folder = Path(tmp)
        face, audio = _build_media(folder, seconds, size, fps)
        backend = load_backend(backend_name, _checkpoint(folder), max_batch=batch_size)
        backend.warmup(4)
        detector = load_detector("auto")
        runs: dict[str, list[dict[str, float]]] = {"baseline": [], "rt_f2f": []}
        for _ in range(repeat):
            runs["baseline"].append(original_loop(backend, detector, face, audio, folder / "baseline.mp4", batch_size))
            t = time.perf_counter()
            result = lipsync_file(
                None, face, audio, folder / "rt_f2f.mp4", backend=backend, batch_size=batch_size, progress=False
            )
            runs["rt_f2f"].append(
                {
                    "total_s": time.perf_counter() - t,
                    "frames": result.frames,
                    "infer_s": result.stats["infer_seconds"],
                    "detector_runs": result.stats["detector_runs"],
                }
            )
        detector.close()

    def best(name: str) -> dict[str, float]:
        return min(runs[name], key=lambda r: r["total_s"])

    base, ours = best("baseline"), best("rt_f2f")
    for r in (base, ours):  # everything but the generator: decode, faces, mel, paste, encode, mux
        r["pipeline_s"] = r["total_s"] - r["infer_s"]
        r["pipeline_ms_per_frame"] = 1000 * r["pipeline_s"] / r["frames"]
        r["infer_ms_per_frame"] = 1000 * r["infer_s"] / r["frames"]
    base_fps = base["frames"] / base["total_s"]
    ours_fps = ours["frames"] / ours["total_s"]
    s3fd_ms = s3fd_ms_per_frame(size)
    base["detector_runs"] = base["frames"]
    return {
        "settings": {
            "seconds": seconds,
            "size": size,
            "fps": fps,
            "batch_size": batch_size,
            "backend": backend.name,
            "detector": getattr(detector, "name", "?"),
            "repeat": repeat,
        },  # fmt: skip
        "baseline": base,
        "rt_f2f": ours,
        "baseline_fps": base_fps,
        "rt_f2f_fps": ours_fps,
        "fps_ratio": ours_fps / base_fps,
        "wall_ratio": base["total_s"] / ours["total_s"],
        # the generator's cost is the same in both (same backend, same batches); this ratio is the pipeline's
        "pipeline_ratio": base["pipeline_ms_per_frame"] / ours["pipeline_ms_per_frame"],
        "s3fd_ms_per_frame": s3fd_ms,
        # what S3FD detection (the original's detector) costs each pipeline at the measured detector-run counts
        "s3fd_detect_s": {
            "baseline": s3fd_ms * base["detector_runs"] / 1000,
            "rt_f2f": s3fd_ms * ours["detector_runs"] / 1000,
        },
        "note": "random-weight generator: speed only, output quality not measured",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # the test face drifts across the frame and leaves it after ~5 s at 384 px
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the test clip")
    parser.add_argument("--size", type=int, default=384, help="frame side in pixels")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--batch", type=int, default=128, help="generator batch size (the original's 128)")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest is reported")
    parser.add_argument("--quick", action="store_true", help="a 3 s clip at 256 px")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    seconds, size = (3.0, 256) if args.quick else (args.seconds, args.size)
    res = measure(seconds, size, args.fps, args.batch, args.backend, args.repeat)
    b, o = res["baseline"], res["rt_f2f"]
    print(f"lip-sync file command, {res['settings']}")
    print(
        f"  baseline (original loop): {b['total_s']:.2f} s for {b['frames']} frames = {res['baseline_fps']:.1f} fps "
        f"(read {b['read_s']:.2f}, detect {b['detect_s']:.2f}, generate {b['generate_s']:.2f} "
        f"[infer {b['infer_s']:.2f}], encode {b['encode_s']:.2f})"
    )
    print(
        f"  rt-f2f lipsync:           {o['total_s']:.2f} s for {o['frames']} frames = {res['rt_f2f_fps']:.1f} fps "
        f"(infer {o['infer_s']:.2f}, detector runs {o['detector_runs']})"
    )
    print(
        f"  pipeline without the generator: baseline {b['pipeline_ms_per_frame']:.1f} ms/frame, "
        f"rt-f2f {o['pipeline_ms_per_frame']:.1f} ms/frame ({res['pipeline_ratio']:.2f}x); generator "
        f"{b['infer_ms_per_frame']:.0f} vs {o['infer_ms_per_frame']:.0f} ms/frame"
    )
    print(f"  fps ratio rt-f2f / baseline: {res['fps_ratio']:.2f}x  (wall {res['wall_ratio']:.2f}x)")
    sd = res["s3fd_detect_s"]
    print(
        f"  with S3FD as the detector ({res['s3fd_ms_per_frame']:.0f} ms per run at {size} px): detection would cost "
        f"{sd['baseline']:.1f} s (baseline, {b['detector_runs']} runs) vs {sd['rt_f2f']:.1f} s "
        f"(rt-f2f, {o['detector_runs']} runs)"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
