"""Talking-face training data in the original Wav2Lip layout, and the samples its trainers draw from it.

Layout (what the original ``preprocess.py`` writes and ``rt-f2f preprocess`` writes too)::

    DATA/<group>/<clip>/0.jpg, 1.jpg, ...   one face crop per video frame (BGR JPEG, any size; read at 96 x 96)
    DATA/<group>/<clip>/audio.wav           the clip's audio, 16 kHz mono
    DATA/train.txt, DATA/val.txt            one ``<group>/<clip>`` per line (the original's filelists/*.txt)

Frame ``i`` of a clip is at ``i / fps`` seconds (25 fps in the original and here by default); frame numbers may
have gaps where no face was found, and a window that needs a missing frame is not drawn, as in the original.

The sampling rules are the original trainers', so a model trained here sees what the released ones saw:

- a *window* is 5 consecutive frames starting at a random frame (``FRAMES_PER_WINDOW``);
- its mel window is 16 steps (0.2 s) starting at step ``int(80 * (frame / fps))`` of the clip's whole-file mel
  (the original computes the mel of the whole ``audio.wav`` and slices it); windows that run past the end are
  not drawn;
- ``sync_sample`` (``color_syncnet_train.py``): with probability 1/2 the faces are the window at the mel's frame
  (label 1, in sync), else the window at another random frame of the same clip (label 0, off sync); the faces are
  the lower half only, 5 frames stacked on the channel axis;
- ``wav2lip_sample`` (``wav2lip_train.py``): the ground-truth window, a *reference* window from another random
  frame of the same clip, the mel window of the ground truth for the expert's sync loss, and one mel window per
  frame (centred as in inference: starting two frames earlier) for the generator.

Public API (kept stable: other trainers import it): ``FRAMES_PER_WINDOW``, ``IMG_SIZE``, ``FPS``,
``read_split``, ``write_split``, ``list_clips``, ``Clip``, ``ClipDataset`` with ``clips``, ``sync_sample``,
``wav2lip_sample``, ``SyncSample``, ``Wav2LipSample``; ``NoSampleError`` when a dataset cannot give a sample.
All arrays are numpy float32 in the original tensor layouts (channels first, BGR in [0, 1]), so
``torch.from_numpy`` is all a trainer needs; nothing here imports torch.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MediaError
from ..lipsync.mel import MEL_STEPS_PER_SECOND, MEL_WINDOW, SAMPLE_RATE, melspectrogram

FRAMES_PER_WINDOW = 5  # syncnet_T: 5 frames = 0.2 s at 25 fps, the span of one 16-step mel window
IMG_SIZE = 96  # hparams.img_size
FPS = 25.0  # hparams.fps: the frame rate the preprocessed frames are numbered at
AUDIO_NAME = "audio.wav"
SPLITS = ("train", "val")
MIN_FRAMES = 3 * FRAMES_PER_WINDOW + 1  # the original skips clips with <= 3 * syncnet_T frames
MAX_TRIES = 1000  # draws before a dataset is declared unusable (the original loops forever)
MEL_CACHE_CLIPS = 256  # whole-clip mels kept in memory (a 10 s clip's mel is 320 KB)
_FRAME_NAME = re.compile(r"^(\d+)\.jpg$")


class NoSampleError(MediaError):
    """The dataset (or a clip) cannot give the sample asked for: no usable frames, or too little audio."""


def read_split(root: str | Path, split: str) -> list[str]:
    """The ``<group>/<clip>`` entries of ``root/<split>.txt`` (blank lines and ``#`` comments skipped)."""
    path = Path(root) / f"{split}.txt"
    if not path.is_file():
        raise NoSampleError(
            f"{path}: no such split file", f"run `rt-f2f preprocess VIDEO... --out {root}` to make the dataset"
        )
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(line)
    return entries


def write_split(root: str | Path, split: str, entries: Iterable[str]) -> Path:
    """Write ``root/<split>.txt`` with one ``<group>/<clip>`` per line."""
    path = Path(root) / f"{split}.txt"
    path.write_text("".join(f"{e}\n" for e in entries), encoding="utf-8")
    return path


def _frame_ids(directory: Path) -> list[int]:
    ids = []
    for p in directory.iterdir():
        m = _FRAME_NAME.match(p.name)
        if m:
            ids.append(int(m.group(1)))
    return sorted(ids)


@dataclass(frozen=True)
class Clip:
    """One preprocessed clip: its directory, the frame numbers present, and its audio file."""

    name: str  # "<group>/<clip>"
    path: Path
    frame_ids: tuple[int, ...]

    @property
    def audio_path(self) -> Path:
        return self.path / AUDIO_NAME

    def frame_path(self, frame_id: int) -> Path:
        return self.path / f"{frame_id}.jpg"


def list_clips(root: str | Path, split: str) -> list[Clip]:
    """The clips of a split that exist on disk, each with its frame numbers; raises if none can be used."""
    root = Path(root)
    clips = []
    for entry in read_split(root, split):
        path = root / entry
        if not path.is_dir():
            continue
        ids = _frame_ids(path)
        if len(ids) >= MIN_FRAMES and (path / AUDIO_NAME).is_file():
            clips.append(Clip(entry, path, tuple(ids)))
    if not clips:
        raise NoSampleError(
            f"{root}: none of the clips in {split}.txt has {MIN_FRAMES} or more face frames and an {AUDIO_NAME}",
            "preprocess videos where a face is visible for at least a second (rt-f2f preprocess)",
        )
    return clips


@dataclass
class SyncSample:
    """One SyncNet training pair: ``faces`` (15, 48, 96) lower halves of 5 frames, ``mel`` (1, 80, 16), label."""

    faces: np.ndarray
    mel: np.ndarray
    in_sync: bool
    clip: str
    mel_frame: int  # the frame whose audio the mel window is
    face_frame: int  # the first frame of the face window (== mel_frame when in sync)


@dataclass
class Wav2LipSample:
    """One generator training sample in ``wav2lip_train.py``'s layout.

    ``faces`` (6, 5, 96, 96): channels 0-2 the ground-truth window with its lower half zeroed, 3-5 the reference
    window; ``indiv_mels`` (5, 1, 80, 16): one mel window per frame; ``mel`` (1, 80, 16): the window's mel for the
    expert; ``target`` (3, 5, 96, 96): the ground truth.
    """

    faces: np.ndarray
    indiv_mels: np.ndarray
    mel: np.ndarray
    target: np.ndarray
    clip: str
    frame: int
    reference_frame: int


class ClipDataset:
    """Reads one split of a preprocessed dataset and draws training samples the original way.

    ``rng`` arguments are ``numpy.random.Generator``s so that runs (and tests) can be repeated exactly.
    """

    def __init__(self, root: str | Path, split: str = "train", img_size: int = IMG_SIZE, fps: float = FPS) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.root = Path(root)
        self.split = split
        self.img_size = img_size
        self.fps = fps
        self.clips = list_clips(self.root, split)
        self._mels: OrderedDict[str, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.clips)

    # --- reading -------------------------------------------------------------------------------------------

    def mel(self, clip: Clip) -> np.ndarray:
        """The whole clip's mel, (T, 80) as the original slices it (time first); cached for recent clips."""
        cached = self._mels.get(clip.name)
        if cached is not None:
            self._mels.move_to_end(clip.name)
            return cached
        from ..audio import read_audio

        wav = read_audio(clip.audio_path, SAMPLE_RATE)
        mel = melspectrogram(wav).T
        self._mels[clip.name] = mel
        while len(self._mels) > MEL_CACHE_CLIPS:
            self._mels.popitem(last=False)
        return mel

    def mel_window(self, clip: Clip, frame: int) -> np.ndarray | None:
        """(16, 80) mel steps for ``frame``, or None when they run past the audio (``crop_audio_window``)."""
        start = int(MEL_STEPS_PER_SECOND * (frame / float(self.fps)))
        window = self.mel(clip)[start : start + MEL_WINDOW]
        return window if start >= 0 and window.shape[0] == MEL_WINDOW else None

    def window_ids(self, clip: Clip, start: int) -> list[int] | None:
        """The 5 frame numbers from ``start`` if all are present (``get_window``), else None."""
        present = set(clip.frame_ids)
        ids = list(range(start, start + FRAMES_PER_WINDOW))
        return ids if all(i in present for i in ids) else None

    def read_window(self, clip: Clip, ids: Sequence[int]) -> np.ndarray | None:
        """(5, size, size, 3) uint8 BGR frames resized with cv2's default (bilinear), or None if one is unreadable."""
        import cv2

        images = []
        for i in ids:
            img = cv2.imread(str(clip.frame_path(i)))
            if img is None:
                return None
            images.append(cv2.resize(img, (self.img_size, self.img_size)))
        return np.stack(images)

    # --- sampling ------------------------------------------------------------------------------------------

    def _two_frames(self, clip: Clip, rng: np.random.Generator) -> tuple[int, int]:
        """A random frame and a different random frame of the same clip (``img_name``, ``wrong_img_name``)."""
        ids = clip.frame_ids
        a = ids[int(rng.integers(len(ids)))]
        b = a
        while b == a:
            b = ids[int(rng.integers(len(ids)))]
        return a, b

    def _clip(self, rng: np.random.Generator, clip: Clip | None) -> Clip:
        return clip if clip is not None else self.clips[int(rng.integers(len(self.clips)))]

    def sync_sample(
        self, rng: np.random.Generator, clip: Clip | None = None, in_sync: bool | None = None
    ) -> SyncSample:
        """A SyncNet pair as ``color_syncnet_train.py`` draws it (random clip unless given; label 50/50 unless given).

        Draws that fail (a window with a missing frame, a mel window past the audio's end) are retried, up to
        ``MAX_TRIES`` times in all, then ``NoSampleError`` says why.
        """
        for _ in range(MAX_TRIES):
            c = self._clip(rng, clip)
            frame, wrong = self._two_frames(c, rng)
            label = bool(rng.integers(2)) if in_sync is None else in_sync
            chosen = frame if label else wrong
            ids = self.window_ids(c, chosen)
            if ids is None:
                continue
            window = self.read_window(c, ids)
            if window is None:
                continue
            mel = self.mel_window(c, frame)
            if mel is None:
                continue
            x = np.concatenate(list(window), axis=2).astype(np.float32) / 255.0  # H x W x 15
            x = x.transpose(2, 0, 1)[:, self.img_size // 2 :]
            return SyncSample(
                faces=np.ascontiguousarray(x),
                mel=np.ascontiguousarray(mel.T[None]).astype(np.float32),
                in_sync=label,
                clip=c.name,
                mel_frame=frame,
                face_frame=chosen,
            )
        raise self._no_sample()

    def frame_mels(self, clip: Clip, frame: int) -> np.ndarray | None:
        """(5, 1, 80, 16): for each frame of the window from ``frame``, the mel window starting two frames earlier
        (``get_segmented_mels``: the generator hears audio centred on its frame), or None near the clip's edges."""
        first = frame + 1
        if first - 2 < 0:
            return None
        mels = []
        for i in range(first, first + FRAMES_PER_WINDOW):
            m = self.mel_window(clip, i - 2)
            if m is None:
                return None
            mels.append(m.T)
        return np.stack(mels)[:, None].astype(np.float32)

    def wav2lip_sample(self, rng: np.random.Generator, clip: Clip | None = None) -> Wav2LipSample:
        """A generator sample as ``wav2lip_train.py`` draws it; retried like ``sync_sample``."""
        for _ in range(MAX_TRIES):
            c = self._clip(rng, clip)
            frame, wrong = self._two_frames(c, rng)
            ids, wrong_ids = self.window_ids(c, frame), self.window_ids(c, wrong)
            if ids is None or wrong_ids is None:
                continue
            window, reference = self.read_window(c, ids), self.read_window(c, wrong_ids)
            if window is None or reference is None:
                continue
            mel = self.mel_window(c, frame)
            indiv = self.frame_mels(c, frame)
            if mel is None or indiv is None:
                continue
            target = window.astype(np.float32).transpose(3, 0, 1, 2) / 255.0  # 3 x T x H x W
            masked = target.copy()
            masked[:, :, self.img_size // 2 :] = 0.0
            ref = reference.astype(np.float32).transpose(3, 0, 1, 2) / 255.0
            return Wav2LipSample(
                faces=np.concatenate([masked, ref], axis=0),
                indiv_mels=np.ascontiguousarray(indiv),
                mel=np.ascontiguousarray(mel.T[None]).astype(np.float32),
                target=np.ascontiguousarray(target),
                clip=c.name,
                frame=frame,
                reference_frame=wrong,
            )
        raise self._no_sample()

    def _no_sample(self) -> NoSampleError:
        seconds = [len(self.mel(c)) / MEL_STEPS_PER_SECOND for c in self.clips[:10]]
        return NoSampleError(
            f"{self.root} ({self.split}): no usable sample in {MAX_TRIES} draws; clips need runs of "
            f"{FRAMES_PER_WINDOW} consecutive face frames and audio covering them (first clips' audio: "
            + ", ".join(f"{s:.2f} s" for s in seconds)
            + ")",
            "preprocess longer videos with the face visible throughout, and check each clip's audio.wav",
        )
