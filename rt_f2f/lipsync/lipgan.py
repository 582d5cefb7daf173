"""LipGAN's networks (Prajwal K R et al., ACM MM 2019) in torch, laid out so the released Keras weights load.

The original is Keras (TensorFlow backend, channels-last) in the ``fully_pythonic`` branch of Rudrabha/LipGAN:

- the generator (``create_model_residual``, the released one; ``create_model`` is the smaller "basic" variant): a
  face encoder over six channels (a reference face, then the target face with its lower half zeroed: the pose
  prior), an audio encoder (a plain CNN over an 80 x 27 mel window), their embeddings concatenated, and a decoder
  of transposed convolutions with skip connections from the face encoder, ending in a 1x1 convolution with 3
  filters and a sigmoid;
- the discriminator: a face encoder and an audio encoder, each L2-normalised; its output is the L2 distance between
  the two embeddings, trained with a contrastive loss (small for in-sync pairs, past a margin for off-sync ones).

Keras details that change the numbers, kept here: batch norm epsilon 1e-3; ``padding='same'`` pads like TensorFlow
(asymmetrically, the extra row/column at the bottom/right) for convolutions and crops the same way for transposed
convolutions; keras-contrib's ``InstanceNormalization()`` (axis None) normalises each sample over all of
(H, W, C) with ``(x - mean) / (std + 1e-3)`` and one scalar gamma/beta.

Every weight-bearing layer is created in the order the Keras code creates its layers, so ``keras_layers()`` lists
them in Keras's naming order (``conv2d_1``, ``conv2d_2``, ...): :mod:`rt_f2f.lipsync.lipgan_h5` maps a ``.h5``
file onto them by those names.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

FACE_SIZE = 96
MEL_BINS = 80
MEL_STEPS = 27  # the fully_pythonic branch's mel_step_size
KERAS_BN_EPS = 1e-3
INSTANCE_NORM_EPS = 1e-3
CONTRASTIVE_MARGIN = 1.0


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding along one axis: out = ceil(size / stride), the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


class KerasConv2d(nn.Conv2d):
    """``keras.layers.Conv2D`` with ``padding`` 'same' (TensorFlow's asymmetric padding) or 'valid'."""

    keras_class = "conv2d"

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int] = 1, padding: str = "same"
    ) -> None:
        super().__init__(cin, cout, kernel, _pair(stride), padding=0)
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        self.same = padding == "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            top, bottom = _same_pads(x.shape[2], self.kernel_size[0], self.stride[0])
            left, right = _same_pads(x.shape[3], self.kernel_size[1], self.stride[1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class KerasConv2dTranspose(nn.ConvTranspose2d):
    """``keras.layers.Conv2DTranspose`` with 'same' padding: output = input x stride, cropped as TensorFlow does."""

    keras_class = "conv2d_transpose"

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        total = max(k - s, 0)
        before = total // 2
        h, w = x.shape[2] * s, x.shape[3] * s
        return full[:, :, before : before + h, before : before + w]


class KerasBatchNorm(nn.BatchNorm2d):
    """``keras.layers.BatchNormalization(momentum=.8)``: epsilon 1e-3; torch's momentum is 1 - Keras's."""

    keras_class = "batch_normalization"

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=KERAS_BN_EPS, momentum=0.2)


class KerasInstanceNorm(nn.Module):
    """keras-contrib ``InstanceNormalization()`` with axis None: one mean/std per sample over (C, H, W)."""

    keras_class = "instance_normalization"

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))  # Keras "gamma", shape (1,)
        self.bias = nn.Parameter(torch.zeros(1))  # Keras "beta"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False) + INSTANCE_NORM_EPS
        return (x - mean) / std * self.weight + self.bias


class ConvBN(nn.Module):
    """The generator's ``conv_block``: Conv2D, BatchNormalization, then ReLU unless ``act`` is False."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        stride: int | tuple[int, int] = 1,
        padding: str = "same",
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = KerasConv2d(cin, cout, kernel, stride, padding)
        self.bn = KerasBatchNorm(cout)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.act else x


class ConvTransposeBN(nn.Module):
    """The generator's ``conv_t_block``: Conv2DTranspose ('same'), BatchNormalization, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.conv = KerasConv2dTranspose(cin, cout, kernel, stride)
        self.bn = KerasBatchNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    """``residual_block``: two conv blocks (each ending in ReLU), the input added, then ReLU again."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first = ConvBN(channels, channels)
        self.second = ConvBN(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.second(self.first(x)) + x)


def _stage(head: nn.Module, channels: int, residuals: int) -> nn.Sequential:
    return nn.Sequential(head, *[Residual(channels) for _ in range(residuals)])


class LipGAN(nn.Module):
    """The LipGAN generator. forward(faces (B,6,96,96), mel (B,1,80,27)) -> (B,3,96,96) in [0, 1].

    ``faces`` channels 0-2: a reference face of the same person; channels 3-5: the target face with rows 48-95
    zeroed. Both BGR in [0, 1] (the original fed cv2 images / 255). ``residual=True`` is the released network
    (``create_model_residual``); False the basic one (``create_model``).
    """

    def __init__(self, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        r = (lambda n: n) if residual else (lambda n: 0)
        # face encoder; the basic variant uses larger kernels and no residual blocks
        self.face_encoder = nn.ModuleList(
            [
                ConvBN(6, 32, 7 if residual else 11),  # 96x96 (identity mapping)
                _stage(ConvBN(32, 64, 5 if residual else 7, 2), 64, r(2)),  # 48x48
                _stage(ConvBN(64, 128, 3 if residual else 5, 2), 128, r(3)),  # 24x24
                _stage(ConvBN(128, 256, 3, 2), 256, r(2)),  # 12x12
                _stage(ConvBN(256, 512, 3, 2), 512, r(2)),  # 6x6
                ConvBN(512, 512, 3, 2),  # 3x3
                nn.Sequential(ConvBN(512, 512, 3, 1, "valid"), ConvBN(512, 512 if residual else 256, 1, 1)),  # 1x1
            ]
        )
        # audio encoder: in the basic variant the "residual blocks" are plain pairs of conv blocks (no add)
        plain = (lambda c: [ConvBN(c, c), ConvBN(c, c)]) if not residual else (lambda c: [Residual(c), Residual(c)])
        self.audio_encoder = nn.Sequential(
            ConvBN(1, 32),
            *plain(32),
            ConvBN(32, 64, 3, 3),  # 27x9
            *plain(64),
            ConvBN(64, 128, 3, (3, 1)),  # 9x9
            *plain(128),
            ConvBN(128, 256, 3, 3),  # 3x3
            *plain(256),
            ConvBN(256, 512, 3, 1, "valid"),  # 1x1
            ConvBN(512, 512, 1, 1),
        )
        embedding = (512 if residual else 256) + 512
        self.decoder = nn.ModuleList(
            [
                ConvTransposeBN(embedding, 512, 3, 3),  # 3x3, then concat x5 (512)
                _stage(ConvTransposeBN(1024, 512), 512, r(2)),  # 6x6, concat x4 (512)
                _stage(ConvTransposeBN(1024, 256), 256, r(2)),  # 12x12, concat x3 (256)
                _stage(ConvTransposeBN(512, 128), 128, r(2)),  # 24x24, concat x2 (128)
                _stage(ConvTransposeBN(256, 64), 64, r(2)),  # 48x48, concat x1 (64)
                ConvTransposeBN(128, 32),  # 96x96, concat identity mapping (32)
            ]
        )
        self.output_block = nn.Sequential(ConvBN(64, 16), ConvBN(16, 16), KerasConv2d(16, 3, 1, 1))

    def forward(self, faces: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        skips = []
        y = faces
        for block in self.face_encoder:
            y = block(y)
            skips.append(y)
        x = torch.cat((skips[-1], self.audio_encoder(mel)), dim=1)
        # skips[5] is the 3x3 map; the 1x1 (skips[6]) only feeds the embedding
        for block, skip in zip(self.decoder, reversed(skips[:6]), strict=True):
            x = torch.cat((skip, block(x)), dim=1)
        return torch.sigmoid(self.output_block(x))

    def keras_layers(self) -> list[nn.Module]:
        """Weight-bearing layers in Keras creation order (what the layer numbers in a ``.h5`` follow)."""
        return keras_layers(self)


class DiscConvBlock(nn.Module):
    """The discriminator's ``conv_block``: Conv2D, InstanceNormalization, LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int | tuple[int, int] = 2, padding: str = "same"):
        super().__init__()
        self.conv = KerasConv2d(cin, cout, kernel, stride, padding)
        self.norm = KerasInstanceNorm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), 0.2)


class LipGANDiscriminator(nn.Module):
    """LipGAN's sync discriminator. forward(face (B,3,96,96), mel (B,1,80,27)) -> distance (B,1) in [0, 2].

    The distance between the L2-normalised face and audio embeddings: near 0 for a face that matches the audio,
    at least ``CONTRASTIVE_MARGIN`` for one that does not, once trained with :func:`contrastive_loss`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder = nn.Sequential(
            DiscConvBlock(3, 64, 7),  # 48
            DiscConvBlock(64, 128, 5),  # 24
            DiscConvBlock(128, 256, 3),  # 12
            DiscConvBlock(256, 512, 3),  # 6
            DiscConvBlock(512, 512, 3),  # 3
            KerasConv2d(512, 512, 3, 1, "valid"),  # 1
        )
        self.audio_encoder = nn.Sequential(
            DiscConvBlock(1, 32, stride=1),
            DiscConvBlock(32, 64, stride=3),  # 27x9
            DiscConvBlock(64, 128, stride=(3, 1)),  # 9x9
            DiscConvBlock(128, 256, stride=3),  # 3x3
            DiscConvBlock(256, 512, stride=1, padding="valid"),  # 1x1
            DiscConvBlock(512, 512, 1, stride=1),
        )

    def embed(self, face: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(face embedding, audio embedding), each (B, 512) with unit L2 norm."""
        f = F.normalize(self.face_encoder(face).flatten(1), dim=1)
        a = F.normalize(self.audio_encoder(mel).flatten(1), dim=1)
        return f, a

    def forward(self, face: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        return embedding_distance(*self.embed(face, mel))

    def keras_layers(self) -> list[nn.Module]:
        return keras_layers(self)


def embedding_distance(face: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """(B, 1) L2 distances between paired rows of two (B, 512) embeddings: the discriminator's output."""
    return torch.sqrt(((face - audio) ** 2).sum(dim=1, keepdim=True))


def contrastive_loss(
    distance: torch.Tensor, off_sync: torch.Tensor, margin: float = CONTRASTIVE_MARGIN
) -> torch.Tensor:
    """The original's loss: ``(1 - y) d^2 + y max(0, margin - d)^2``, y = 1 for off-sync (the original's "fake").

    In-sync pairs (y = 0) are pulled together, off-sync pairs pushed at least ``margin`` apart.
    """
    y = off_sync.to(distance.dtype).reshape(distance.shape)
    return ((1 - y) * distance.square() + y * F.relu(margin - distance).square()).mean()


def keras_layers(model: nn.Module) -> list[nn.Module]:
    """Modules that correspond to one weight-bearing Keras layer, in registration (= Keras creation) order."""
    return [m for m in model.modules() if hasattr(m, "keras_class")]


def random_weights_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights that keep activations spread (see ``models.random_weights_``); nothing about lip-sync quality."""
    from .models import random_weights_ as wav2lip_random

    wav2lip_random(model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, KerasInstanceNorm):
                m.weight.copy_(0.8 + 0.4 * torch.rand(1, generator=gen))
                m.bias.copy_(0.1 * torch.randn(1, generator=gen))
    return model.eval()


LIPGAN_MEL_STEPS = MEL_STEPS


class WithWav2LipInputs(nn.Module):
    """LipGAN behind the lip-sync engine's calling convention (the one Wav2Lip defined).

    forward(mel (B,1,80,27), faces (B,6,96,96)) with faces' channels 0-2 the masked target and 3-5 the reference,
    as the engine builds them for Wav2Lip; LipGAN wants the reference first, so the halves are swapped here.
    """

    def __init__(self, generator: LipGAN) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.cat((faces[:, 3:], faces[:, :3]), dim=1), mel)
