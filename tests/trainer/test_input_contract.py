"""The trainer's side of the input contract: what `TrainConfig.input_contract` says is what the loop
feeds the network and what model.pt records, and the pipeline's consumers read it back from there.

Consistency test (pltd vs pltd): the training contract changed to x / 255 → the batches the network
trains on lie in [0, 1], and the teacher built from the run's model.pt feeds x / 255 too.
"""

from __future__ import annotations

import torch

from pltd.checkpoints import load_model
from pltd.input_contract import InputContract
from pltd.trainer.config import TrainConfig, load_config
from pltd.trainer.loop import train
from pltd.trainer.model import TaskModel

TINY = ["arch=resnet_tiny", "tasks=[fld, hpe]", "batch_size=8", "num_workers=0", "shuffle_buffer=8",
        "checkpoint_every=1000", "compile=false"]  # fmt: skip


def test_default_training_contract_is_pltds():
    cfg = load_config("teacher-300wlp", TINY)
    assert cfg.input_contract() == InputContract(input_size=cfg.input_size)
    assert (cfg.input_contract().mean, cfg.input_contract().std) == ((127.5,) * 3, (127.5,) * 3)


def test_a_changed_training_contract_reaches_the_batches_the_checkpoint_and_the_teacher(pltd, tmp_path, monkeypatch):
    from pltd.stages.landmarks.sources import ResNetTeacher

    raw = InputContract(input_size=112, mean=(0.0,) * 3, std=(255.0,) * 3)
    monkeypatch.setattr(
        TrainConfig, "input_contract", lambda self: raw.model_copy(update={"input_size": self.input_size})
    )
    seen: list[tuple[float, float]] = []
    outputs = TaskModel.outputs

    def spy(self, x):
        seen.append((float(x.min()), float(x.max())))
        return outputs(self, x)

    monkeypatch.setattr(TaskModel, "outputs", spy)
    cfg = load_config("teacher-300wlp", [*TINY, "input_size=112"])
    train(cfg, str(pltd), str(tmp_path / "run"), max_steps=2)
    assert len(seen) >= 2 and all(lo >= 0.0 and hi <= 1.0 for lo, hi in seen)
    assert max(hi for _, hi in seen) > 0.9  # the white dots: x / 255, not x / 127.5 − 1

    _, ck = load_model(tmp_path / "run" / "model.pt", "landmarks_pose", "test")
    assert ck["input"] == raw
    monkeypatch.undo()  # the consumer reads the file, not the patched config
    teacher = ResNetTeacher(str(tmp_path / "run" / "model.pt"), device="cpu")
    fed: list[torch.Tensor] = []
    teacher.model.register_forward_pre_hook(lambda _, args: fed.append(args[0]))
    teacher.predict(torch.full((1, 112, 112, 3), 255, dtype=torch.uint8).numpy())
    assert teacher.contract == raw and float(fed[0].min()) == float(fed[0].max()) == 1.0
