"""The input contract (pltd/input_contract.py): its arithmetic, its round trip through a checkpoint, and
every consumer of a pltd checkpoint feeding the network what the checkpoint's contract says.

Consistency tests (pltd vs pltd): a checkpoint saved with another normalisation (x / 255, BGR) makes
the teacher, the blink network, the recognition backend and `pltd eval`'s model all feed x / 255 in
BGR; the expected inputs are computed here by hand, not by the contract. The trainer's side (the
contract it feeds and records) is tests/trainer/test_input_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pltd.checkpoints import CheckpointError, load_model, save_checkpoint
from pltd.input_contract import InputContract, unrecorded
from pltd.networks import create

RAW_BGR = InputContract(input_size=16, colour="bgr", mean=(0.0,) * 3, std=(255.0,) * 3)


def by_hand(images: np.ndarray, c: InputContract) -> np.ndarray:
    """(x − mean) / std per channel in the contract's colour order, NCHW, in float64."""
    x = images[..., ::-1] if c.colour == "bgr" else images
    x = (x.astype(np.float64) - np.array(c.mean)) / np.array(c.std)
    return x.transpose(0, 3, 1, 2) if c.layout == "nchw" else x


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "c",
    [InputContract(input_size=16), RAW_BGR,
     InputContract(input_size=16, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0), layout="nhwc")],
    ids=["pltd", "raw_bgr", "per_channel_nhwc"],
)  # fmt: skip
def test_numpy_and_torch_feed_the_same_values(c):
    x = images(3, 16)
    want = by_hand(x, c)
    from_numpy = c.numpy_input(x)
    from_torch = c.torch_input(torch.from_numpy(x))
    assert from_numpy.dtype == np.float32 and from_numpy.shape == want.shape
    assert np.allclose(from_numpy, want, atol=1e-6)
    assert np.array_equal(from_torch.numpy(), from_numpy)  # bit for bit: the same float32 arithmetic


def test_pltd_contract_is_x_over_127_5_minus_1_bit_for_bit():
    x = torch.from_numpy(images(2, 16))
    want = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    got = InputContract(input_size=16).torch_input(x)
    assert torch.equal(got, want) and got.is_contiguous(memory_format=torch.channels_last)


def test_a_float_batch_is_left_as_it_was():
    x = torch.full((1, 16, 16, 3), 255.0)
    InputContract(input_size=16).torch_input(x)
    assert float(x.min()) == 255.0


def test_wrong_size_is_an_error():
    with pytest.raises(ValueError, match=r"expected N×16×16×3 images, got \(1, 8, 8, 3\)"):
        InputContract(input_size=16).numpy_input(images(1, 8))
    with pytest.raises(ValueError, match="expected N×16×16×3"):
        InputContract(input_size=16).torch_input(torch.from_numpy(images(1, 8)))


def test_the_onnx_adapter_is_a_contract():
    from pltd.stages.landmarks.onnx_backend import PRESETS, OnnxAdapter

    assert issubclass(OnnxAdapter, InputContract)
    own = InputContract()
    for name in ("pltd_teacher", "pltd_blink", "pltd_embedding"):  # pltd's exports: the training contract
        p = PRESETS[name]
        assert (p.colour, p.mean, p.std, p.layout) == (own.colour, own.mean, own.std, own.layout), name


def test_checkpoint_round_trip_and_files_without_a_contract(tmp_path):
    net = create("resnet_tiny", num_outputs=1)
    save_checkpoint(tmp_path / "b.pt", net, "resnet_tiny", "blink", RAW_BGR, arch_kwargs={"num_outputs": 1})
    assert load_model(tmp_path / "b.pt", "blink", "x")[1]["input"] == RAW_BGR
    save_checkpoint(tmp_path / "d.pt", net, "resnet_tiny", "blink", 24, arch_kwargs={"num_outputs": 1})
    assert load_model(tmp_path / "d.pt", "blink", "x")[1]["input"] == InputContract(input_size=24)
    # a file written before checkpoints recorded the contract: x / 127.5 − 1, RGB, NCHW at its input_size
    old = torch.load(tmp_path / "d.pt", weights_only=True)
    del old["input"]
    old["input_size"] = 40
    torch.save(old, tmp_path / "old.pt")
    got = load_model(tmp_path / "old.pt", "blink", "x")[1]["input"]
    assert got == unrecorded(40) == InputContract(input_size=40, colour="rgb", mean=(127.5,) * 3, std=(127.5,) * 3)
    old["input"] = {"input_size": 40, "colour": "grey"}
    torch.save(old, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt: its input contract is invalid: colour"):
        load_model(tmp_path / "bad.pt", "blink", "landmarks.blink_checkpoint")


def fed(module: torch.nn.Module) -> list[torch.Tensor]:
    """The inputs `module` receives from now on."""
    seen: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().cpu().clone()))
    return seen


@pytest.mark.parametrize("contract", [InputContract(input_size=16), RAW_BGR], ids=["pltd", "raw_bgr"])
def test_every_consumer_feeds_what_the_checkpoint_says(tmp_path, contract):
    """Consistency: the teacher, the blink network, the `checkpoint` recognition backend and `pltd eval`'s
    model read the contract from the checkpoint and feed exactly it (checked against `by_hand`)."""
    from pltd.stages.identities.networks import create_network
    from pltd.stages.landmarks.blink import ResNetBlink
    from pltd.stages.landmarks.sources import ResNetTeacher
    from pltd.trainer.evaluation.model import EvalModel

    def checkpoint(task: str, outputs: int):
        path = tmp_path / f"{task}.pt"
        save_checkpoint(path, create("resnet_tiny", num_outputs=outputs), "resnet_tiny", task, contract,
                        arch_kwargs={"num_outputs": outputs})  # fmt: skip
        return str(path)

    x = images(2, contract.input_size, seed=1)
    want = by_hand(x, contract)

    teacher = ResNetTeacher(checkpoint("landmarks_pose", 139), device="cpu")
    seen = fed(teacher.model)
    teacher.predict(x)
    blink = ResNetBlink(checkpoint("blink", 1), device="cpu")
    blink_seen = fed(blink.model)
    blink(list(x))
    fr = create_network("checkpoint", checkpoint("face_recognition", 32), device="cpu")
    fr_seen = fed(fr.model)
    fr._run(x)  # the aligned crops, past the alignment
    evaluation = EvalModel(tmp_path / "face_recognition.pt", device="cpu")
    eval_seen = fed(evaluation.net)
    evaluation(x)

    for name, got in {"teacher": seen, "blink": blink_seen, "recognition": fr_seen, "eval": eval_seen}.items():
        assert len(got) == 1 and np.allclose(got[0].numpy(), want, atol=1e-6), name
    assert (teacher.input_size, blink.size, fr.size, evaluation.size) == (contract.input_size,) * 4
