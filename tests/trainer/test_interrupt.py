"""`pltd train` as a user runs it: progress from step 1, Ctrl-C leaves a checkpoint that `--resume`
continues to the same final state, and only what resuming and the pipeline need is written."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pltd.trainer.config import load_config
from pltd.trainer.loop import train
from tests.trainer.test_training import TINY, losses

PLTD_CMD = str(Path(sys.executable).parent / "pltd")
SETS = [*(a for s in TINY if not s.startswith("num_workers") for a in ("--set", s)),
        "--set", "num_workers=1", "--set", "progress_seconds=0.01"]  # fmt: skip


@pytest.mark.slow
def test_sigint_leaves_a_checkpoint_that_resume_continues_to_the_same_state(pltd, tmp_path):
    """Consistency (pltd vs pltd): a real `pltd train` process (one loader worker) gets SIGINT on its
    whole process group, as Ctrl-C in a terminal sends it, after its second progress line. It saves a
    checkpoint, exits 130 and prints the command that resumes; that command says where it resumed and
    ends with the same losses and weights as an uninterrupted run of the same 8 steps."""
    part, full = tmp_path / "part", tmp_path / "full"
    cmd = [PLTD_CMD, "train", "--preset", "mtl", "--data", str(pltd), "--out", str(part), "--max-steps", "8", *SETS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    head = []
    for line in proc.stderr:
        head.append(line)
        if line.startswith("step 2/8"):
            os.killpg(proc.pid, signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=600) == 130, "".join(head) + rest
    assert any(x.startswith("step 1/8 epoch 0 |") and "images/s" in x and "ETA" in x for x in head)
    assert "SIGINT: stopping after the current step" in rest
    at = torch.load(part / "checkpoint.pt", weights_only=True)["step"]
    assert 2 <= at < 8 and f"stopped at step {at} by SIGINT" in rest
    resume = shlex.split(rest.split("resume with: ", 1)[1].split("\n", 1)[0])
    assert resume[:2] == ["pltd", "train"] and "--resume" in resume
    res = subprocess.run([PLTD_CMD, *resume[1:]], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"resumed from {part / 'checkpoint.pt'} at step {at} (epoch" in res.stderr

    # the uninterrupted reference runs as the same kind of process: in the test process, threads set
    # by earlier tests change the float reduction order, and 1e-7 gradient differences grow to 1e-3
    ref = [PLTD_CMD, "train", "--preset", "mtl", "--data", str(pltd), "--out", str(full), "--max-steps", "8", *SETS]
    assert subprocess.run(ref, capture_output=True, text=True, timeout=600).returncode == 0
    assert len(losses(part)) == 8 and losses(part) == pytest.approx(losses(full), rel=1e-5)
    a = torch.load(part / "checkpoint.pt", weights_only=True)
    b = torch.load(full / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 8
    for k, v in b["model"].items():
        assert torch.allclose(a["model"][k].float(), v.float(), rtol=1e-5, atol=1e-6), k
    # what a run keeps by default: the training checkpoint, the pipeline's model.pt, logs (CSV, TensorBoard)
    assert sorted(p.name for p in part.iterdir()) == ["checkpoint.pt", "log_rank0.csv", "model.pt", "tb"]


def test_progress_estimate_and_resume_are_reported(pltd, tmp_path, capfd):
    """Consistency: in-process runs print the start-up line, the CPU warning with its estimate, a
    progress line at step 1, and on --resume the step it resumed at; no TorchScript by default."""
    out = tmp_path / "run"
    train(load_config("mtl", TINY), str(pltd), str(out), max_steps=2)
    first = capfd.readouterr().err
    assert "pltd train: mtl (iresnet_multi_tiny, tasks fr+fld+hpe) on cpu, world 1; 48 rows" in first
    assert "warning: no GPU" in first and "s per step of 8 images" in first
    assert first.count("step 1/2 epoch 0 |") == 1 and "step 2/2 epoch 0 |" in first
    train(load_config("mtl", TINY), str(pltd), str(out), max_steps=3, resume=True)
    again = capfd.readouterr().err
    assert f"resumed from {out / 'checkpoint.pt'} at step 2 (epoch 0, 2 batches into it)" in again
    assert "step 3/3 epoch 0 |" in again and "step 1/" not in again
    assert not (out / "model.torchscript.pt").exists() and (out / "model.pt").is_file()


def test_checkpoint_writer_saves_the_state_of_the_step(tmp_path):
    """Consistency: the background write holds the values of the moment `save` was called, even when
    training changes the tensors while the file is being written."""
    from pltd.trainer.runtime import CheckpointWriter

    w, t = CheckpointWriter(), torch.arange(1_000_000, dtype=torch.float32)
    w.save(tmp_path / "c.pt", {"model": {"w": t}, "step": 7}, step=7)
    t.add_(1.0)  # the next optimizer step
    w.wait()
    back = torch.load(tmp_path / "c.pt", weights_only=True)
    assert back["step"] == 7 and torch.equal(back["model"]["w"], torch.arange(1_000_000, dtype=torch.float32))
    assert not (tmp_path / "c.pt.tmp").exists()


def test_restore_reads_back_every_key_the_checkpoint_writes(tmp_path):
    """Consistency: `restore` loads every part and the position `training_state` saved (one list of
    keys for both), through a real file; a checkpoint missing a part is an error, not a silent reset."""
    from pltd.trainer.loop import restore, training_state

    def parts(seed: int) -> dict:
        torch.manual_seed(seed)
        net = torch.nn.Linear(3, 2)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)
        return {
            "model": net,
            "optimizer": opt,
            "scheduler": sched,
            "scaler": torch.amp.GradScaler("cpu", enabled=False),
        }

    a = parts(0)
    a["model"](torch.ones(1, 3)).sum().backward()
    a["optimizer"].step()
    a["scheduler"].step()
    torch.save(training_state(a, (7, 2, 3), load_config("mtl", ["arch=iresnet_multi_tiny"])), tmp_path / "c.pt")
    b = parts(1)
    ck = torch.load(tmp_path / "c.pt", weights_only=True)
    assert restore(ck, b) == (7, 2, 3)
    assert all(torch.equal(v, b["model"].state_dict()[k]) for k, v in a["model"].state_dict().items())
    assert b["optimizer"].state_dict()["state"][0]["momentum_buffer"] is not None
    assert b["scheduler"].last_epoch == a["scheduler"].last_epoch == 1
    del ck["scaler"]
    with pytest.raises(KeyError, match="scaler"):
        restore(ck, parts(2))
