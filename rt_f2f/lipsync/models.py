"""Wav2Lip's three networks, written so the released checkpoints load into them unchanged.

Module names, layer order and shapes follow the released state dicts key for key (``conv_block.0`` is the
convolution, ``conv_block.1`` its batch norm), because the checkpoints are the product here: any renaming would
need a conversion step and a second file format to support. ``tests/test_lipsync_models.py`` compares every key
and shape against ``wav2lip_checkpoint_keys.json``.

Inputs follow the original training code: faces are cv2 BGR crops scaled to [0, 1]; mel windows are
(80 mel bins x 16 steps) from :mod:`rt_f2f.lipsync.mel`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

FACE_SIZE = 96  # the generator's face crop is 96 x 96
MEL_STEPS = 16  # mel steps per video frame window (0.2 s at 80 mel steps/s)
MEL_BINS = 80


class ConvBlock(nn.Module):
    """Conv2d + BatchNorm + ReLU, optionally adding the input back before the ReLU (a residual block)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class PlainConvBlock(nn.Module):
    """Conv2d + LeakyReLU(0.01) without normalisation: the discriminator's block (BatchNorm hurts GAN critics)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int | tuple[int, int], padding: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding))
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


class ConvTransposeBlock(nn.Module):
    """ConvTranspose2d + BatchNorm + ReLU: the decoder's upsampling step."""

    def __init__(
        self, cin: int, cout: int, kernel_size: int, stride: int, padding: int, output_padding: int = 0
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _residuals(channels: int, count: int) -> list[nn.Module]:
    return [ConvBlock(channels, channels, 3, 1, 1, residual=True) for _ in range(count)]


def _audio_encoder(residuals_at_256: int) -> nn.Sequential:
    """The mel encoder shared (in shape, not weights) by the generator and SyncNet: (B,1,80,16) -> (B,512,1,1).

    The two differ only in how many residual blocks sit at 256 channels (1 in the generator, 2 in SyncNet).
    """
    return nn.Sequential(
        ConvBlock(1, 32, 3, 1, 1),
        *_residuals(32, 2),
        ConvBlock(32, 64, 3, (3, 1), 1),
        *_residuals(64, 2),
        ConvBlock(64, 128, 3, 3, 1),
        *_residuals(128, 2),
        ConvBlock(128, 256, 3, (3, 2), 1),
        *_residuals(256, residuals_at_256),
        ConvBlock(256, 512, 3, 1, 0),
        ConvBlock(512, 512, 1, 1, 0),
    )


class Wav2Lip(nn.Module):
    """The lip-sync generator: a U-Net over the 6-channel face input, conditioned on a 512-d audio embedding.

    forward(mel (B,1,80,16), faces (B,6,96,96)) -> (B,3,96,96) in [0, 1]. Face channels 0-2 hold the target frame
    with its lower half zeroed (where the mouth is to be drawn), channels 3-5 a reference frame of the same
    person (identity and pose), both BGR in [0, 1]. The original also accepted (B,T,...) sequences and folded T
    into the batch; callers here pass flat batches.
    """

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBlock(6, 16, 7, 1, 3)),  # 96x96
                nn.Sequential(ConvBlock(16, 32, 3, 2, 1), *_residuals(32, 2)),  # 48x48
                nn.Sequential(ConvBlock(32, 64, 3, 2, 1), *_residuals(64, 3)),  # 24x24
                nn.Sequential(ConvBlock(64, 128, 3, 2, 1), *_residuals(128, 2)),  # 12x12
                nn.Sequential(ConvBlock(128, 256, 3, 2, 1), *_residuals(256, 2)),  # 6x6
                nn.Sequential(ConvBlock(256, 512, 3, 2, 1), *_residuals(512, 1)),  # 3x3
                nn.Sequential(ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)),  # 1x1
            ]
        )
        self.audio_encoder = _audio_encoder(residuals_at_256=1)
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBlock(512, 512, 1, 1, 0)),  # 1x1
                nn.Sequential(ConvTransposeBlock(1024, 512, 3, 1, 0), *_residuals(512, 1)),  # 3x3
                nn.Sequential(ConvTransposeBlock(1024, 512, 3, 2, 1, 1), *_residuals(512, 2)),  # 6x6
                nn.Sequential(ConvTransposeBlock(768, 384, 3, 2, 1, 1), *_residuals(384, 2)),  # 12x12
                nn.Sequential(ConvTransposeBlock(512, 256, 3, 2, 1, 1), *_residuals(256, 2)),  # 24x24
                nn.Sequential(ConvTransposeBlock(320, 128, 3, 2, 1, 1), *_residuals(128, 2)),  # 48x48
                nn.Sequential(ConvTransposeBlock(160, 64, 3, 2, 1, 1), *_residuals(64, 2)),  # 96x96
            ]
        )
        self.output_block = nn.Sequential(ConvBlock(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        x = self.audio_encoder(mel)
        skips = []
        y = faces
        for block in self.face_encoder_blocks:
            y = block(y)
            skips.append(y)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), skips.pop()), dim=1)
        return self.output_block(x)


class SyncNetColor(nn.Module):
    """The lip-sync expert: embeds 5 consecutive lower-half face crops and their mel window into one space.

    forward(mel (B,1,80,16), faces (B,15,48,96)) -> (audio_embedding, face_embedding), each (B,512) L2-normalised;
    their cosine similarity is the sync score Wav2Lip was trained against. ``faces`` is 5 BGR frames in [0, 1],
    stacked on the channel axis, lower half only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder = nn.Sequential(
            ConvBlock(15, 32, 7, 1, 3),
            ConvBlock(32, 64, 5, (1, 2), 1),
            *_residuals(64, 2),
            ConvBlock(64, 128, 3, 2, 1),
            *_residuals(128, 3),
            ConvBlock(128, 256, 3, 2, 1),
            *_residuals(256, 2),
            ConvBlock(256, 512, 3, 2, 1),
            *_residuals(512, 2),
            ConvBlock(512, 512, 3, 2, 1),
            ConvBlock(512, 512, 3, 1, 0),
            ConvBlock(512, 512, 1, 1, 0),
        )
        self.audio_encoder = _audio_encoder(residuals_at_256=2)

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        face_embedding = self.face_encoder(faces).flatten(1)
        audio_embedding = self.audio_encoder(mel).flatten(1)
        return F.normalize(audio_embedding, p=2, dim=1), F.normalize(face_embedding, p=2, dim=1)


class Wav2LipDiscQual(nn.Module):
    """The visual-quality discriminator of Wav2Lip-GAN: probability that a face's lower half is real.

    forward(faces (B,3,96,96) BGR in [0, 1]) -> (B,1). It looks only at the lower half, as in training.
    """

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(PlainConvBlock(3, 32, 7, 1, 3)),  # 48x96
                nn.Sequential(PlainConvBlock(32, 64, 5, (1, 2), 2), PlainConvBlock(64, 64, 5, 1, 2)),  # 48x48
                nn.Sequential(PlainConvBlock(64, 128, 5, 2, 2), PlainConvBlock(128, 128, 5, 1, 2)),  # 24x24
                nn.Sequential(PlainConvBlock(128, 256, 5, 2, 2), PlainConvBlock(256, 256, 5, 1, 2)),  # 12x12
                nn.Sequential(PlainConvBlock(256, 512, 3, 2, 1), PlainConvBlock(512, 512, 3, 1, 1)),  # 6x6
                nn.Sequential(PlainConvBlock(512, 512, 3, 2, 1), PlainConvBlock(512, 512, 3, 1, 1)),  # 3x3
                nn.Sequential(PlainConvBlock(512, 512, 3, 1, 0), PlainConvBlock(512, 512, 1, 1, 0)),  # 1x1
            ]
        )
        self.binary_pred = nn.Sequential(nn.Conv2d(512, 1, 1, 1, 0), nn.Sigmoid())

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = faces[:, :, faces.size(2) // 2 :]
        for block in self.face_encoder_blocks:
            x = block(x)
        return self.binary_pred(x).flatten(1)


# Convolution weights for random_weights_ are drawn N(0, GAIN^2 / fan_in): PyTorch's default init shrinks
# activations through the generator's ~45 layers until every output pixel is ~0.5, which makes parity checks
# between backends trivially pass. With this gain the outputs spread over most of (0, 1) and depend on the inputs.
RANDOM_CONV_GAIN = 1.2


def random_weights_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill ``model`` in place with random weights suited to testing and benchmarking without the real checkpoints.

    Batch-norm affine parameters and running statistics are perturbed too, so a conversion that drops or mis-folds
    a batch norm shows up as a parity error. Nothing about such a model says anything about lip-sync quality.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                w = module.weight
                # ConvTranspose2d stores (cin, cout, kh, kw): its fan-in per output is cin * kh * kw
                fan_in = w[0].numel() if isinstance(module, nn.Conv2d) else w.shape[0] * w[0, 0].numel()
                w.normal_(0.0, RANDOM_CONV_GAIN / fan_in**0.5, generator=gen)
                if module.bias is not None:
                    module.bias.uniform_(-(fan_in**-0.5), fan_in**-0.5, generator=gen)
            elif isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                module.num_batches_tracked.fill_(1000)
    return model.eval()


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "wav2lip": Wav2Lip,
    "syncnet": SyncNetColor,
    "disc_qual": Wav2LipDiscQual,
}
