"""S3FD, the face detector Wav2Lip's own pipeline used, so a user who has ``s3fd.pth`` gets the same crops.

The network copies the public ``face_alignment`` / Wav2Lip ``face_detection`` definition layer for layer (VGG16
trunk, L2-normalised conv3_3 / conv4_3 / conv5_3, fc6/fc7 as convolutions, extra conv6/conv7, one classification
and one regression head per scale) because the released ``s3fd-619a316812.pth`` is a bare state dict of exactly
those names: strict loading is the check that the file is what it claims to be. Decoding follows the original
(anchors 4x the stride on strides 4..128, variances 0.1 / 0.2, NMS at 0.3 IoU, keep scores > 0.5), but vectorised
per scale instead of a Python loop per candidate. One quirk is kept on purpose: the public port gives ``fc6``
padding 3 without the original Caffe model's dilation, so the fc7 map is a few cells larger than stride 32 implies
and its anchors sit on that grid; the public pipeline ran the released weights that way, so matching it
reproduces its boxes.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelFormatError, ModelMissingError
from .facebox import FaceBox

# the pixel means the released weights were trained with, subtracted from the RGB image as the public pipeline does
PIXEL_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
VARIANCES = (0.1, 0.2)
CANDIDATE_SCORE = 0.05  # decode only anchors above this (the original's pre-NMS cut)


class L2Norm(nn.Module):
    """Per-position L2 normalisation over channels with a learned per-channel scale (ParseNet)."""

    def __init__(self, n_channels: int, scale: float = 1.0) -> None:
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((n_channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return x / norm * self.weight.view(1, -1, 1, 1)


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=padding)


class S3FD(nn.Module):
    """forward(image (B,3,H,W), mean-subtracted) -> [cls1, reg1, ..., cls6, reg6] on strides 4, 8, ..., 128."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1_1, self.conv1_2 = _conv(3, 64), _conv(64, 64)
        self.conv2_1, self.conv2_2 = _conv(64, 128), _conv(128, 128)
        self.conv3_1, self.conv3_2, self.conv3_3 = _conv(128, 256), _conv(256, 256), _conv(256, 256)
        self.conv4_1, self.conv4_2, self.conv4_3 = _conv(256, 512), _conv(512, 512), _conv(512, 512)
        self.conv5_1, self.conv5_2, self.conv5_3 = _conv(512, 512), _conv(512, 512), _conv(512, 512)
        self.fc6 = _conv(512, 1024, 3, 1, 3)
        self.fc7 = _conv(1024, 1024, 1, 1, 0)
        self.conv6_1, self.conv6_2 = _conv(1024, 256, 1, 1, 0), _conv(256, 512, 3, 2, 1)
        self.conv7_1, self.conv7_2 = _conv(512, 128, 1, 1, 0), _conv(128, 256, 3, 2, 1)
        self.conv3_3_norm = L2Norm(256, scale=10)
        self.conv4_3_norm = L2Norm(512, scale=8)
        self.conv5_3_norm = L2Norm(512, scale=5)
        # conv3_3 predicts 3 background logits + 1 face logit ("max-out" background), the others 2
        self.conv3_3_norm_mbox_conf, self.conv3_3_norm_mbox_loc = _conv(256, 4), _conv(256, 4)
        self.conv4_3_norm_mbox_conf, self.conv4_3_norm_mbox_loc = _conv(512, 2), _conv(512, 4)
        self.conv5_3_norm_mbox_conf, self.conv5_3_norm_mbox_loc = _conv(512, 2), _conv(512, 4)
        self.fc7_mbox_conf, self.fc7_mbox_loc = _conv(1024, 2), _conv(1024, 4)
        self.conv6_2_mbox_conf, self.conv6_2_mbox_loc = _conv(512, 2), _conv(512, 4)
        self.conv7_2_mbox_conf, self.conv7_2_mbox_loc = _conv(256, 2), _conv(256, 4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = F.relu(self.conv1_1(x))
        h = F.max_pool2d(F.relu(self.conv1_2(h)), 2, 2)
        h = F.relu(self.conv2_1(h))
        h = F.max_pool2d(F.relu(self.conv2_2(h)), 2, 2)
        h = F.relu(self.conv3_2(F.relu(self.conv3_1(h))))
        f3_3 = F.relu(self.conv3_3(h))
        h = F.max_pool2d(f3_3, 2, 2)
        h = F.relu(self.conv4_2(F.relu(self.conv4_1(h))))
        f4_3 = F.relu(self.conv4_3(h))
        h = F.max_pool2d(f4_3, 2, 2)
        h = F.relu(self.conv5_2(F.relu(self.conv5_1(h))))
        f5_3 = F.relu(self.conv5_3(h))
        h = F.max_pool2d(f5_3, 2, 2)
        ffc7 = F.relu(self.fc7(F.relu(self.fc6(h))))
        f6_2 = F.relu(self.conv6_2(F.relu(self.conv6_1(ffc7))))
        f7_2 = F.relu(self.conv7_2(F.relu(self.conv7_1(f6_2))))
        f3_3, f4_3, f5_3 = self.conv3_3_norm(f3_3), self.conv4_3_norm(f4_3), self.conv5_3_norm(f5_3)

        cls1 = self.conv3_3_norm_mbox_conf(f3_3)
        background = torch.max(torch.max(cls1[:, 0:1], cls1[:, 1:2]), cls1[:, 2:3])
        cls1 = torch.cat([background, cls1[:, 3:4]], dim=1)
        return [
            cls1,
            self.conv3_3_norm_mbox_loc(f3_3),
            self.conv4_3_norm_mbox_conf(f4_3),
            self.conv4_3_norm_mbox_loc(f4_3),
            self.conv5_3_norm_mbox_conf(f5_3),
            self.conv5_3_norm_mbox_loc(f5_3),
            self.fc7_mbox_conf(ffc7),
            self.fc7_mbox_loc(ffc7),
            self.conv6_2_mbox_conf(f6_2),
            self.conv6_2_mbox_loc(f6_2),
            self.conv7_2_mbox_conf(f7_2),
            self.conv7_2_mbox_loc(f7_2),
        ]


def decode(outputs: Sequence[torch.Tensor], score_min: float = CANDIDATE_SCORE) -> list[np.ndarray]:
    """Network outputs -> per image an (N, 5) array of [x1, y1, x2, y2, score] candidates (before NMS).

    Each scale i has stride 2^(i+2) and square anchors 4x the stride centred on its cells; a regression
    (dx, dy, dw, dh) moves the centre by dx * 0.1 * anchor and scales the side by exp(dw * 0.2).
    """
    batch = outputs[0].shape[0]
    per_image: list[list[np.ndarray]] = [[] for _ in range(batch)]
    for level in range(len(outputs) // 2):
        cls = F.softmax(outputs[2 * level].float(), dim=1)[:, 1].cpu().numpy()  # (B, H, W)
        reg = outputs[2 * level + 1].float().cpu().numpy()  # (B, 4, H, W)
        stride = 2 ** (level + 2)
        anchor = 4.0 * stride
        b_idx, y_idx, x_idx = np.nonzero(cls > score_min)
        if b_idx.size == 0:
            continue
        loc = reg[b_idx, :, y_idx, x_idx]  # (N, 4)
        cx = stride / 2 + x_idx * stride + loc[:, 0] * VARIANCES[0] * anchor
        cy = stride / 2 + y_idx * stride + loc[:, 1] * VARIANCES[0] * anchor
        w = anchor * np.exp(loc[:, 2] * VARIANCES[1])
        h = anchor * np.exp(loc[:, 3] * VARIANCES[1])
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, cls[b_idx, y_idx, x_idx]], axis=1)
        for b in np.unique(b_idx):
            per_image[b].append(boxes[b_idx == b])
    return [np.concatenate(p).astype(np.float32) if p else np.zeros((0, 5), np.float32) for p in per_image]


def nms(candidates: np.ndarray, iou_threshold: float = 0.3, score_threshold: float = 0.5) -> np.ndarray:
    """Greedy NMS (OpenCV's), best first, dropping boxes scoring at or below ``score_threshold``."""
    if candidates.shape[0] == 0:
        return candidates
    xywh = np.column_stack([candidates[:, :2], candidates[:, 2:4] - candidates[:, :2]]).tolist()
    keep = cv2.dnn.NMSBoxes(xywh, candidates[:, 4].tolist(), score_threshold + 1e-7, iou_threshold)
    keep = np.asarray(keep, dtype=np.intp).reshape(-1)
    kept = candidates[keep]
    return kept[np.argsort(-kept[:, 4], kind="stable")]


def load_s3fd(path: str | os.PathLike, device: str | torch.device = "cpu") -> S3FD:
    """The S3FD network with the released weights, loaded strictly (a wrong file fails here, not at detection)."""
    p = Path(path)
    if not p.is_file():
        raise ModelMissingError(
            f"S3FD weights not found: {p}",
            "run `rt-f2f models pull s3fd` on a machine with internet, or use the built-in detector (mediapipe)",
        )
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelFormatError(
            f"{p} is not a readable S3FD checkpoint ({type(exc).__name__})", "pull it again"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFormatError(f"{p} holds no S3FD state dict", "pass s3fd-619a316812.pth (rt-f2f models pull s3fd)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = S3FD()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFormatError(
            f"{p} does not match the S3FD network: {str(exc).splitlines()[0][:300]}",
            "pass s3fd-619a316812.pth (rt-f2f models pull s3fd); Wav2Lip's own checkpoints go to --checkpoint_path",
        ) from exc
    return net.to(device).eval()


class S3FDDetector:
    """Batched S3FD detection on RGB frames, returning faces best first.

    ``max_side`` downscales large frames before the network (S3FD's cost grows with pixels; faces in a talking-head
    video are large), and boxes are scaled back to the frame's coordinates.
    """

    name = "s3fd"

    def __init__(
        self,
        weights: str | os.PathLike | S3FD,
        device: str | torch.device = "cpu",
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        max_side: int | None = None,
        batch_size: int = 16,
    ) -> None:
        self.net = weights if isinstance(weights, S3FD) else load_s3fd(weights, device)
        self.device = torch.device(device)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.batch_size = max(1, int(batch_size))

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        scale = 1.0
        if self.max_side and max(image.shape[:2]) > self.max_side:
            scale = self.max_side / max(image.shape[:2])
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return image.astype(np.float32) - PIXEL_MEAN, scale

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        """Faces in each RGB frame, best first. Frames of different sizes run in separate batches."""
        results: list[list[FaceBox]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.shape, []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                prepared = [self._prepare(images[i]) for i in chunk]
                batch = torch.from_numpy(np.stack([p[0] for p in prepared]).transpose(0, 3, 1, 2)).to(self.device)
                for i, cand, (_, scale) in zip(chunk, decode(self.net(batch)), prepared, strict=True):
                    kept = nms(cand, self.nms_threshold, self.score_threshold)
                    h, w = images[i].shape[:2]
                    results[i] = [
                        FaceBox(
                            float(np.clip(x1 / scale, 0, w)),
                            float(np.clip(y1 / scale, 0, h)),
                            float(np.clip(x2 / scale, 0, w)),
                            float(np.clip(y2 / scale, 0, h)),
                            float(s),
                        )
                        for x1, y1, x2, y2, s in kept
                    ]
        return results

    def close(self) -> None:
        pass
