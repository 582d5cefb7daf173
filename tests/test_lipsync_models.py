"""Wav2Lip networks match the released checkpoints key for key, and checkpoint loading is strict and explains itself."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import torch
from lipsync_fixtures import random_network, shared_checkpoint, write_random_checkpoint

from rt_f2f.errors import ModelFormatError, ModelMissingError
from rt_f2f.lipsync.checkpoint import (
    file_sha256,
    identify,
    load_network,
    load_wav2lip,
    read_state_dict,
)
from rt_f2f.lipsync.models import ARCHITECTURES, SyncNetColor, Wav2Lip, Wav2LipDiscQual

# every key and shape of the three released state dicts (without the 'module.' prefix), copied from the release
RELEASED_KEYS = Path(__file__).parent / "data" / "wav2lip_checkpoint_keys.json"


@pytest.fixture(scope="module")
def released() -> dict[str, dict[str, list[int]]]:
    if not RELEASED_KEYS.is_file():
        pytest.skip("wav2lip_checkpoint_keys.json (key list of the released checkpoints) is not available")
    return json.loads(RELEASED_KEYS.read_text())


@pytest.mark.parametrize("kind", ["wav2lip", "syncnet", "disc_qual"])
def test_state_dict_keys_and_shapes_equal_the_released_checkpoint(kind, released):
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in ARCHITECTURES[kind]().state_dict().items()}
    assert ours == released[kind]
    assert list(ours) == list(released[kind])  # same order too: the released files were saved in module order


def test_generator_has_the_published_parameter_count():
    with torch.device("meta"):
        n = sum(p.numel() for p in Wav2Lip().parameters())
    assert round(n / 1e6, 1) == 36.3


def test_forward_shapes_and_ranges():
    torch.manual_seed(0)
    with torch.inference_mode():
        frames = load_wav2lip(shared_checkpoint())(torch.rand(2, 1, 80, 16) * 8 - 4, torch.rand(2, 6, 96, 96))
        audio_emb, face_emb = SyncNetColor().eval()(torch.rand(3, 1, 80, 16), torch.rand(3, 15, 48, 96))
        real = Wav2LipDiscQual().eval()(torch.rand(4, 3, 96, 96))
    assert frames.shape == (2, 3, 96, 96)
    assert 0 <= float(frames.min()) and float(frames.max()) <= 1
    assert audio_emb.shape == face_emb.shape == (3, 512)
    torch.testing.assert_close(audio_emb.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(face_emb.norm(dim=1), torch.ones(3))
    assert real.shape == (4, 1) and bool(((real > 0) & (real < 1)).all())


def test_generator_output_depends_on_audio_reference_face_and_masked_face():
    """Each input reaches the output: a wiring slip (dropped skip, swapped inputs) would make one of these inert."""
    model = load_wav2lip(shared_checkpoint())
    g = torch.Generator().manual_seed(0)
    mel = torch.rand(1, 1, 80, 16, generator=g) * 8 - 4
    faces = torch.rand(1, 6, 96, 96, generator=g)
    with torch.inference_mode():
        base = model(mel, faces)
        other_mel = model(torch.rand(1, 1, 80, 16, generator=g) * 8 - 4, faces)
        other_ref = faces.clone()
        other_ref[:, 3:] = torch.rand(1, 3, 96, 96, generator=g)
        other_target = faces.clone()
        other_target[:, :3] = torch.rand(1, 3, 96, 96, generator=g)
        by_ref = model(mel, other_ref)
        by_target = model(mel, other_target)
    for changed in (other_mel, by_ref, by_target):
        assert float((changed - base).abs().max()) > 1e-3


def test_load_wav2lip_restores_every_weight_from_the_released_format():
    path = shared_checkpoint("wav2lip")
    assert not zipfile.is_zipfile(path)  # the pre-1.6 serialisation the released files use
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert set(saved) == {"state_dict", "optimizer", "global_step", "global_epoch"}
    assert all(k.startswith("module.") for k in saved["state_dict"])
    model = load_wav2lip(path)
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved["state_dict"]["module." + key]), key


def test_zip_format_checkpoint_loads_too(tmp_path):
    path = write_random_checkpoint(tmp_path / "zip.pth", "disc_qual", seed=2, legacy_format=False)
    assert zipfile.is_zipfile(path)
    expected = random_network("disc_qual", seed=2).state_dict()
    loaded = load_network(path, "disc_qual").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())


def test_bare_state_dict_without_module_prefix_loads(tmp_path):
    model = random_network("disc_qual", seed=1)
    path = tmp_path / "bare.pth"
    torch.save(model.state_dict(), path)
    loaded = load_network(path, "disc_qual")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_syncnet_file_given_as_generator_is_named(tmp_path):
    path = shared_checkpoint("syncnet")
    with pytest.raises(ModelFormatError, match="SyncNet lip-sync expert") as err:
        load_wav2lip(path)
    assert "wav2lip.pth" in err.value.hint
    assert identify(read_state_dict(path)) == "syncnet"


def test_discriminator_file_given_as_generator_is_named():
    with pytest.raises(ModelFormatError, match="visual-quality discriminator"):
        load_wav2lip(shared_checkpoint("disc_qual"))


def test_face_detector_file_is_named(tmp_path):
    path = tmp_path / "s3fd.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3), "conv3_3_norm.weight": torch.zeros(256)}, path)
    with pytest.raises(ModelFormatError, match="S3FD face detector"):
        load_wav2lip(path)


def _damaged(tmp_path: Path, edit) -> Path:
    state = {k: v.clone() for k, v in random_network("disc_qual").state_dict().items()}
    edit(state)
    path = tmp_path / "damaged.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    return path


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    def edit(state):
        del state["binary_pred.0.bias"]
        state["extra.weight"] = torch.zeros(1)

    with pytest.raises(ModelFormatError) as err:
        load_network(_damaged(tmp_path, edit), "disc_qual")
    text = str(err.value)
    assert "1 missing keys" in text and "binary_pred.0.bias" in text
    assert "1 unexpected keys" in text and "extra.weight" in text


def test_shape_mismatch_names_the_weight(tmp_path):
    def edit(state):
        state["binary_pred.0.weight"] = torch.zeros(2, 512, 1, 1)

    with pytest.raises(
        ModelFormatError, match=r"binary_pred\.0\.weight: file \(2, 512, 1, 1\) vs model \(1, 512, 1, 1\)"
    ):
        load_network(_damaged(tmp_path, edit), "disc_qual")


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a torch file" * 100)
    with pytest.raises(ModelFormatError, match="not a readable torch checkpoint"):
        load_wav2lip(junk)
    tensors = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], tensors)
    with pytest.raises(ModelFormatError, match="no state dict"):
        load_wav2lip(tensors)
    with pytest.raises(ModelMissingError, match="not found"):
        load_wav2lip(tmp_path / "absent.pth")
    for legacy in (True, False):  # an interrupted download, in either serialisation
        cut = write_random_checkpoint(tmp_path / f"cut{legacy}.pth", "disc_qual", legacy_format=legacy)
        cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
        with pytest.raises(ModelFormatError, match="not a readable torch checkpoint"):
            load_network(cut, "disc_qual")


class _Custom:
    """An arbitrary pickled object: weights_only loading must refuse it."""


def test_pickled_objects_are_refused_unless_trusted(tmp_path):
    path = tmp_path / "custom.pth"
    state = {"module." + k: v for k, v in random_network("disc_qual").state_dict().items()}
    torch.save({"state_dict": state, "extra": _Custom()}, path)
    with pytest.raises(ModelFormatError, match="pickled objects other than tensors") as err:
        load_network(path, "disc_qual")
    assert "trust_pickle" in err.value.hint
    assert isinstance(load_network(path, "disc_qual", trust_pickle=True), Wav2LipDiscQual)


def test_file_sha256_is_the_hash_of_the_bytes(tmp_path):
    path = write_random_checkpoint(tmp_path / "d.pth", "disc_qual", seed=5)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    other = write_random_checkpoint(tmp_path / "d2.pth", "disc_qual", seed=6)
    assert file_sha256(other) != file_sha256(path)


def test_random_checkpoints_are_reproducible(tmp_path):
    a = read_state_dict(write_random_checkpoint(tmp_path / "a.pth", "syncnet", seed=4))
    b = read_state_dict(write_random_checkpoint(tmp_path / "b.pth", "syncnet", seed=4))
    c = read_state_dict(write_random_checkpoint(tmp_path / "c.pth", "syncnet", seed=5))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["face_encoder.0.conv_block.0.weight"], c["face_encoder.0.conv_block.0.weight"])
