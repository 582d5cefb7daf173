"""LipGAN: Keras semantics of its layers, strict loading of Keras ``.h5`` files, its audio windows, and the
``rt-f2f lipsync --model lipgan`` command on a random-weight file in the released layout.

No LipGAN weights install here: the files are written with h5py in Keras 2's layout (layer groups named by class and
creation counter, ``weight_names`` attributes, datasets at ``<layer>/<layer>/<weight>:0``). Random weights say
nothing about lip-sync quality; the tests check layout, numerics of the Keras conventions and the plumbing.
"""

from __future__ import annotations

import argparse
from functools import cache
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from lipsync_fixtures import shared_checkpoint
from media_fixtures import write_face_photo, write_speech
from test_lipsync_mel import reference_melspectrogram

from rt_f2f.errors import BackendUnavailableError, ModelFormatError, ModelMissingError
from rt_f2f.lipsync import filecmd
from rt_f2f.lipsync.backends import default_backend, load_backend, model_of
from rt_f2f.lipsync.lipgan import (
    KerasConv2d,
    KerasConv2dTranspose,
    KerasInstanceNorm,
    LipGAN,
    LipGANDiscriminator,
    contrastive_loss,
    random_weights_,
)
from rt_f2f.lipsync.lipgan_audio import MEL_STEPS, inference_chunks, melspectrogram, training_window
from rt_f2f.lipsync.lipgan_h5 import identify, load_lipgan_network, write_keras_h5


@cache
def generator(seed: int = 0) -> LipGAN:
    return random_weights_(LipGAN(), seed)


@pytest.fixture(scope="module")
def lipgan_h5(tmp_path_factory) -> Path:
    return write_keras_h5(generator(), tmp_path_factory.mktemp("lipgan") / "lipgan.h5")


def inputs(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    faces = torch.rand(batch, 6, 96, 96, generator=g)
    faces[:, 3:, 48:] = 0  # the target's lower half is masked, as in the original
    return faces, 4 * torch.rand(batch, 1, 80, MEL_STEPS, generator=g) * 2 - 4


# ------------------------------------------------------------------------------------------- Keras layer semantics


def test_same_padding_puts_the_odd_pixel_after_as_tensorflow_does():
    conv = KerasConv2d(1, 1, 3, 2, "same")
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = conv(x)
    assert out.shape == (1, 1, 2, 2)
    # TensorFlow pads 0 before and 1 after: the first window covers rows/cols 0-2 (torch's padding=1 would be 0-1)
    assert out[0, 0, 0, 0].item() == x[0, 0, :3, :3].sum().item()
    assert out[0, 0, 1, 1].item() == x[0, 0, 2:, 2:].sum().item()


@pytest.mark.parametrize(("size", "kernel", "stride"), [(3, 3, 2), (4, 3, 2), (1, 3, 3), (5, 5, 2)])
def test_transposed_convolution_is_the_adjoint_of_the_same_padded_convolution(size, kernel, stride):
    """TensorFlow defines conv2d_transpose as the gradient of conv2d with the same padding: <T y, x> = <y, C x>."""
    g = torch.Generator().manual_seed(0)
    forward = KerasConv2d(2, 3, kernel, stride, "same")
    transpose = KerasConv2dTranspose(3, 2, kernel, stride)
    with torch.no_grad():
        w = torch.randn(3, 2, kernel, kernel, generator=g)
        forward.weight.copy_(w)  # Conv2d (out=3, in=2, k, k)
        transpose.weight.copy_(w)  # ConvTranspose2d (in=3, out=2, k, k): the same tensor
        forward.bias.zero_()
        transpose.bias.zero_()
        x = torch.randn(1, 2, size * stride, size * stride, generator=g)
        y = torch.randn(1, 3, size, size, generator=g)
        ty = transpose(y)
        assert ty.shape == x.shape
        assert torch.allclose((ty * x).sum(), (y * forward(x)).sum(), rtol=1e-4, atol=1e-4)


def test_instance_norm_normalises_each_sample_over_all_axes_with_epsilon_on_the_std():
    norm = KerasInstanceNorm()
    with torch.no_grad():
        norm.weight.fill_(2.0)
        norm.bias.fill_(0.5)
    x = torch.randn(3, 4, 5, 5) * torch.tensor([1.0, 10.0, 0.1]).view(3, 1, 1, 1) + 7
    y = norm(x)
    for i in range(3):
        std = x[i].std(unbiased=False).item()
        assert y[i].mean().item() == pytest.approx(0.5, abs=1e-4)
        assert y[i].std(unbiased=False).item() == pytest.approx(2.0 * std / (std + 1e-3), rel=1e-4)


def test_generator_and_discriminator_shapes_and_ranges():
    faces, mel = inputs()
    with torch.no_grad():
        out = generator()(faces, mel)
        distance = random_weights_(LipGANDiscriminator())(faces[:, :3], mel)
    assert out.shape == (2, 3, 96, 96)
    assert 0 < out.min() and out.max() < 1 and out.std() > 0.05  # a sigmoid output that depends on the input
    assert distance.shape == (2, 1) and ((distance >= 0) & (distance <= 2)).all()
    with torch.no_grad():
        other_audio = generator()(faces, mel.flip(0))
        basic = random_weights_(LipGAN(residual=False))(faces[:1], mel[:1])
    assert (other_audio - out).abs().max() > 1e-3  # the mouth depends on the audio
    assert basic.shape == (1, 3, 96, 96)


def test_contrastive_loss_pulls_in_sync_pairs_together_and_pushes_off_sync_past_the_margin():
    d = torch.tensor([[0.0], [0.5], [1.5], [0.5]])
    off = torch.tensor([0.0, 0.0, 1.0, 1.0])
    # (0 + 0.25 + 0 + 0.25) / 4: in-sync pays d^2, off-sync pays (1 - d)^2 only inside the margin
    assert contrastive_loss(d, off).item() == pytest.approx(0.125)


# ---------------------------------------------------------------------------------------------- the .h5 layout


def test_written_file_has_keras_layout(lipgan_h5):
    with h5py.File(lipgan_h5, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names[:2] == ["input_face", "input_audio"] and names[-1] == "prediction"
        assert f.attrs["keras_version"] == "2.2.4" and f.attrs["backend"] == "tensorflow"  # h5py 3 reads str
        conv = f["conv2d_1"]
        assert [w.decode() for w in conv.attrs["weight_names"]] == ["conv2d_1/kernel:0", "conv2d_1/bias:0"]
        assert conv["conv2d_1/kernel:0"].shape == (7, 7, 6, 32)  # the first face conv: kh, kw, in, out
        bn = f["batch_normalization_1"]
        assert [w.decode().split("/")[1] for w in bn.attrs["weight_names"]] == [
            "gamma:0",
            "beta:0",
            "moving_mean:0",
            "moving_variance:0",
        ]
        # the first transposed conv maps the 1024-channel embedding to 512: Keras stores (kh, kw, out, in)
        assert f["conv2d_transpose_1"]["conv2d_transpose_1/kernel:0"].shape == (3, 3, 512, 1024)
        assert f["conv2d_67"]["conv2d_67/kernel:0"].shape == (1, 1, 16, 3)  # the last: 16 -> 3 channels, 1x1
        assert "conv2d_68" not in f


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Every weight equal; batch norms' num_batches_tracked is torch bookkeeping a Keras file does not hold."""
    sa, sb = ({k: v for k, v in m.state_dict().items() if "num_batches" not in k} for m in (a, b))
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_loading_is_exact_and_recognises_each_network(lipgan_h5, tmp_path):
    assert_same_weights(load_lipgan_network(lipgan_h5), generator())  # the forward pass is compared in the engine test
    assert identify(lipgan_h5) == "lipgan"
    disc = write_keras_h5(random_weights_(LipGANDiscriminator(), 3), tmp_path / "disc.h5", full_model=True)
    assert identify(disc) == "lipgan_disc"
    faces, mel = inputs()
    with torch.no_grad():
        a = load_lipgan_network(disc, "lipgan_disc")(faces[:, :3], mel)
        b = random_weights_(LipGANDiscriminator(), 3)(faces[:, :3], mel)
    assert torch.equal(a, b)


def test_layer_names_may_be_offset_by_layers_created_before(lipgan_h5, tmp_path):
    """train.py builds the generator and then the discriminator in one session: counters carry on between them,
    and tf.keras names the first layer of a class without a number. Names are mapped by their order, not value."""
    shifted = tmp_path / "shifted.h5"
    with h5py.File(lipgan_h5, "r") as src, h5py.File(shifted, "w") as dst:
        renamed = []
        for raw in src.attrs["layer_names"]:
            name = raw.decode()
            cls, _, num = name.rpartition("_")
            new = name if not num.isdigit() else (cls if num == "1" else f"{cls}_{int(num) + 40}")
            dst.create_group(new)
            weights = [w.decode().replace(name + "/", new + "/") for w in src[name].attrs["weight_names"]]
            dst[new].attrs["weight_names"] = np.array([w.encode() for w in weights], dtype="S")
            for old_w, new_w in zip(src[name].attrs["weight_names"], weights, strict=True):
                dst[new].create_dataset(new_w, data=src[name][old_w.decode()][()])
            renamed.append(new.encode())
        dst.attrs["layer_names"] = np.array(renamed)
    assert_same_weights(load_lipgan_network(shifted), generator())


def test_another_models_file_is_refused_with_what_it_is(lipgan_h5, tmp_path):
    disc = write_keras_h5(LipGANDiscriminator(), tmp_path / "disc.h5")
    with pytest.raises(ModelFormatError, match="LipGAN discriminator"):
        load_lipgan_network(disc)
    with pytest.raises(ModelFormatError, match="torch checkpoint"):
        load_lipgan_network(shared_checkpoint())
    basic = write_keras_h5(LipGAN(residual=False), tmp_path / "basic.h5")
    with pytest.raises(ModelFormatError, match="basic LipGAN"):
        load_lipgan_network(basic)
    with pytest.raises(ModelMissingError):
        load_lipgan_network(tmp_path / "absent.h5")
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ModelFormatError, match="no Keras weights"):
        load_lipgan_network(empty)


def test_a_wrong_shape_or_a_missing_weight_is_named(lipgan_h5, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(lipgan_h5.read_bytes())
    with h5py.File(bad, "r+") as f:
        del f["conv2d_5"]["conv2d_5/kernel:0"]
        f["conv2d_5"].create_dataset("conv2d_5/kernel:0", data=np.zeros((3, 3, 64, 65), np.float32))
    with pytest.raises(ModelFormatError, match=r"conv2d_5 kernel has shape \(3, 3, 64, 65\)"):
        load_lipgan_network(bad)
    bad.write_bytes(lipgan_h5.read_bytes())
    with h5py.File(bad, "r+") as f:
        f["batch_normalization_3"].attrs["weight_names"] = np.array(
            [b"batch_normalization_3/gamma:0", b"batch_normalization_3/beta:0"]
        )
    with pytest.raises(ModelFormatError, match="batch_normalization_3 has no 'moving_mean'"):
        load_lipgan_network(bad, "lipgan")


# ----------------------------------------------------------------------------------------------------- audio


def original_batch_inference_chunks(mel: np.ndarray, fps: float) -> list[np.ndarray]:
    """batch_inference.py of the fully_pythonic branch, transcribed: stop at the first window past the end."""
    chunks, i, mult = [], 0, 80.0 / fps
    while 1:
        start_idx = int(i * mult)
        if start_idx + 27 > len(mel[0]):
            break
        chunks.append(mel[:, start_idx : start_idx + 27])
        i += 1
    return chunks


def original_training_window(spec: np.ndarray, center_frame_id: int) -> np.ndarray | None:
    """train.py's get_audio_segment and its length check, transcribed."""
    start_idx = int((80.0 / 25.0) * (center_frame_id - 4))
    end_idx = start_idx + 27
    seg = spec[:, start_idx:end_idx] if end_idx <= spec.shape[1] else None
    return seg if seg is not None and seg.shape[1] == 27 else None


@pytest.mark.parametrize("fps", [25.0, 29.97, 30.0])
def test_audio_windows_equal_the_originals(fps):
    g = np.random.default_rng(0)
    wav = (0.3 * g.standard_normal(16000 + 333)).astype(np.float32)
    mel = melspectrogram(wav)
    np.testing.assert_allclose(mel, reference_melspectrogram(wav), atol=1e-5)  # audio.py + audio_hparams.py
    ours, theirs = inference_chunks(mel, fps), original_batch_inference_chunks(mel, fps)
    assert len(ours) == len(theirs) > 0
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    for frame in range(0, 30):
        a, b = training_window(mel, frame), original_training_window(mel, frame)
        assert (a is None and b is None) or np.array_equal(a, b)


# --------------------------------------------------------------------------------------- engine and command line


def test_backend_recognises_lipgan_and_runs_it_with_the_engines_inputs(lipgan_h5):
    assert model_of(lipgan_h5) == "lipgan" and model_of(shared_checkpoint()) == "wav2lip"
    assert default_backend(lipgan_h5) in ("torch", "torch-bf16")
    engine = load_backend("torch", lipgan_h5, device="cpu")
    assert engine.mel_window == 27 and engine.model == "lipgan"
    faces, mel = inputs()
    # the engine's convention: channels 0-2 the masked target, 3-5 the reference
    engine_faces = torch.cat((faces[:, 3:], faces[:, :3]), dim=1).numpy()
    out = engine.infer(mel.numpy(), engine_faces)
    with torch.no_grad():
        expected = generator()(faces, mel).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    with pytest.raises(BackendUnavailableError, match="Wav2Lip only"):
        load_backend("onnxruntime", lipgan_h5)
    with pytest.raises(ModelFormatError, match="holds the wav2lip generator"):
        load_backend("torch", shared_checkpoint(), model="lipgan")


def test_lipsync_command_renders_a_video_with_lipgan(lipgan_h5, tmp_path):
    photo = write_face_photo(tmp_path / "face.png", 256)
    speech = write_speech(tmp_path / "speech.wav", 0.6)
    out = tmp_path / "out.mp4"
    parser = argparse.ArgumentParser(prog="rt-f2f")
    filecmd.add_subcommand(parser.add_subparsers(dest="command"))
    argv = ["lipsync", "--model", "lipgan", "--checkpoint_path", str(lipgan_h5), "--face", str(photo)]
    args = parser.parse_args(argv + ["--audio", str(speech), "--outfile", str(out), "--wav2lip_batch_size", "4"])
    assert args.func(args) == 0
    from rt_f2f.video import read_frames

    frames = [f.image for f in read_frames(out)]
    from rt_f2f.lipsync.mel import frame_count, mel_steps

    # the file command makes the original's number of frames: one per mel window that fits (0.6 s -> 12 at 25 fps)
    assert len(frames) == frame_count(mel_steps(int(0.6 * 16000)), 25.0)
    still = np.asarray(__import__("cv2").imread(str(photo))[..., ::-1], dtype=int)
    changed = [np.abs(f.astype(int) - still).mean() for f in frames]
    assert min(changed) > 0.3  # the generator's mouth was pasted into every frame


def test_call_server_streams_lipgan_with_its_longer_audio_window(lipgan_h5):
    """The server's batch latency (0.3 s) is below LipGAN's 0.36 s of audio per frame: its streams wait longer."""
    from rt_f2f.server.feeds.lipsync_model import CallLipSyncConfig, load_lipsync

    model = load_lipsync(lipgan_h5, None, CallLipSyncConfig(batch=1))
    assert model.backend.model == "lipgan" and model.backend_name in ("torch", "torch-bf16")
    stream = model.stream()
    assert stream.mel_window == 27 and stream.lookahead_s == pytest.approx(0.3625)
    assert stream.max_latency_s >= stream.lookahead_s
