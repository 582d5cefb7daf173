"""From frame to generator input and back: 96x96 crops, the 6-channel input, and a seamless paste-back.

The original pastes the generated 96x96 face, resized, over the whole face box: the box edge shows as a seam
(colour and sharpness change at a rectangle) and the upper face, which the generator only reproduces, turns blurry.
Here only a soft lower-face ellipse is blended in (full weight around mouth and chin, falling smoothly to exactly
zero well inside the box), after matching the generated patch's colour statistics to the frame's in CIE Lab.
Pixels outside the box are never touched, and inside the box everything the mask does not reach stays byte-exact.

Channel order: frames are RGB; the released networks were trained on OpenCV's BGR crops, so the generator input is
flipped to BGR here and its output flipped back (see ``rt_f2f.lipsync.models.Wav2Lip``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .facebox import FaceBox

FACE_SIZE = 96


def crop_face(image: np.ndarray, box: FaceBox, size: int = FACE_SIZE) -> np.ndarray:
    """The (size, size, 3) uint8 crop the generator sees (box pixels, resized; aspect is not kept, as trained).

    Resized bilinearly (cv2's default) whatever the box size: the original's training and inference crops were
    made that way, and the released weights expect their look (area averaging would give softer mouths).
    """
    x1, y1, x2, y2 = box.ints()
    region = image[y1:y2, x1:x2]
    if region.size == 0:
        raise ValueError(f"empty face box {box.ints()} in a {image.shape[1]}x{image.shape[0]} frame")
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_LINEAR)


def build_input(faces: np.ndarray, references: np.ndarray | None = None) -> np.ndarray:
    """(B, 96, 96, 3) RGB uint8 crops -> (B, 6, 96, 96) float32 in [0, 1]: masked target + reference, BGR.

    Channels 0-2 hold the target with its lower half zeroed (the generator draws the mouth there), channels 3-5 a
    reference of the same face (the original uses the same frame; a caller may pass another for pose/identity).
    """
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[-1] != 3:
        raise ValueError(f"expected (B, H, W, 3) crops, got {faces.shape}")
    refs = faces if references is None else np.asarray(references)
    if refs.shape != faces.shape:
        raise ValueError(f"references {refs.shape} differ from faces {faces.shape}")
    bgr = faces[..., ::-1].astype(np.float32) / 255.0
    ref_bgr = refs[..., ::-1].astype(np.float32) / 255.0
    masked = bgr.copy()
    masked[:, faces.shape[1] // 2 :] = 0.0
    return np.ascontiguousarray(np.concatenate([masked, ref_bgr], axis=3).transpose(0, 3, 1, 2))


def output_to_rgb(pred: np.ndarray) -> np.ndarray:
    """(B, 3, 96, 96) BGR in [0, 1] from the generator -> (B, 96, 96, 3) RGB float32 in [0, 1]."""
    pred = np.asarray(pred, dtype=np.float32)
    if pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) generator output, got {pred.shape}")
    return np.ascontiguousarray(np.clip(pred, 0.0, 1.0).transpose(0, 2, 3, 1)[..., ::-1])


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class MaskShape:
    """The blend region as an ellipse in box-relative coordinates (0..1 across, 0..1 down).

    The default covers cheeks, mouth and chin (the generator's lower half plus a margin upward for the nose-mouth
    fold) and reaches zero a few percent inside every box edge. ``feather`` is the share of the radius over which
    the weight falls from 1 to 0 (a C1-smooth ramp, so no visible edge).
    """

    cx: float = 0.5
    cy: float = 0.62
    rx: float = 0.45
    ry: float = 0.36
    feather: float = 0.45

    def __post_init__(self) -> None:
        if not (
            self.cx - self.rx >= 0 and self.cx + self.rx <= 1 and self.cy - self.ry >= 0 and self.cy + self.ry <= 1
        ):
            raise ValueError("the blend ellipse must lie inside the face box")
        if not 0 < self.feather <= 1:
            raise ValueError("feather must be in (0, 1]")


def blend_mask(height: int, width: int, shape: MaskShape = MaskShape()) -> np.ndarray:
    """(height, width) float32 weights in [0, 1]: 1 at the mouth, smoothly 0 toward and at the box border."""
    v = (np.arange(height, dtype=np.float32) + 0.5) / height
    u = (np.arange(width, dtype=np.float32) + 0.5) / width
    r = np.sqrt(((u[None, :] - shape.cx) / shape.rx) ** 2 + ((v[:, None] - shape.cy) / shape.ry) ** 2)
    return (1.0 - _smoothstep(1.0 - shape.feather, 1.0, r)).astype(np.float32)


def match_colour(patch: np.ndarray, target: np.ndarray, weights: np.ndarray, max_gain: float = 2.0) -> np.ndarray:
    """Shift ``patch``'s Lab mean/std toward ``target``'s, both weighted by ``weights`` (RGB float32 in [0, 1]).

    The gain on the spread is bounded so a flat region cannot blow up noise (nor a noisy one be flattened).
    """
    w = weights.reshape(-1).astype(np.float64)
    total = w.sum()
    if total <= 1e-6:
        return patch
    p_lab = cv2.cvtColor(patch.astype(np.float32), cv2.COLOR_RGB2Lab)
    t_lab = cv2.cvtColor(target.astype(np.float32), cv2.COLOR_RGB2Lab)
    wn = w / total
    p_flat, t_flat = p_lab.reshape(-1, 3).astype(np.float64), t_lab.reshape(-1, 3).astype(np.float64)
    p_mean, t_mean = wn @ p_flat, wn @ t_flat
    p_std = np.sqrt(np.maximum(wn @ (p_flat * p_flat) - p_mean**2, 0.0))
    t_std = np.sqrt(np.maximum(wn @ (t_flat * t_flat) - t_mean**2, 0.0))
    gain = np.clip(t_std / np.maximum(p_std, 1e-3), 1.0 / max_gain, max_gain)
    out = ((p_lab - p_mean) * gain + t_mean).astype(np.float32)
    return np.clip(cv2.cvtColor(out, cv2.COLOR_Lab2RGB), 0.0, 1.0)


class Blender:
    """Pastes generated faces back into frames through a feathered lower-face mask with colour matching."""

    def __init__(self, shape: MaskShape = MaskShape(), colour_match: bool = True, cache_size: int = 64) -> None:
        self.shape = shape
        self.colour_match = colour_match
        self._masks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def mask(self, height: int, width: int) -> np.ndarray:
        """The blend weights for a box of this size (cached: a tracked box keeps its size for many frames)."""
        key = (height, width)
        m = self._masks.get(key)
        if m is None:
            m = blend_mask(height, width, self.shape)
            self._masks[key] = m
            if len(self._masks) > self._cache_size:
                self._masks.popitem(last=False)
        else:
            self._masks.move_to_end(key)
        return m

    def paste(self, image: np.ndarray, box: FaceBox, patch: np.ndarray, crop: np.ndarray | None = None) -> np.ndarray:
        """A copy of ``image`` with ``patch`` (96x96x3 RGB float in [0, 1]) blended into ``box``.

        ``crop`` is the 96x96 uint8 crop the patch was generated from (``crop_face``); when given, colour
        statistics are matched at the patch's own resolution, which costs a fraction of doing it on the box.
        """
        x1, y1, x2, y2 = box.ints()
        h, w = y2 - y1, x2 - x1
        if h <= 0 or w <= 0 or x1 < 0 or y1 < 0 or x2 > image.shape[1] or y2 > image.shape[0]:
            raise ValueError(f"face box {box.ints()} is not inside the {image.shape[1]}x{image.shape[0]} frame")
        out = image.copy()
        region = image[y1:y2, x1:x2].astype(np.float32)
        patch = np.asarray(patch, dtype=np.float32)
        if self.colour_match and crop is not None and crop.shape[:2] == patch.shape[:2]:
            patch = match_colour(patch, crop.astype(np.float32) / 255.0, self.mask(*patch.shape[:2]))
        generated = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR)
        m = self.mask(h, w)
        if self.colour_match and crop is None:
            generated = match_colour(generated, region / 255.0, m)
        blended = region + m[..., None] * (generated * 255.0 - region)
        out[y1:y2, x1:x2] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return out

    def paste_batch(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[FaceBox],
        patches: np.ndarray,
        crops: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        crops = crops if crops is not None else [None] * len(images)
        return [self.paste(*args) for args in zip(images, boxes, patches, crops, strict=True)]
