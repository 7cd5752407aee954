"""Any model that maps a 112x112 face to an embedding, landmarks and pose: a pltd checkpoint
(`model.pt` of `pltd train`) or a TorchScript file. Landmarks come back as fractions of the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pltd.input_contract import InputContract
from pltd.networks import split_landmarks_pose
from pltd.schemas import LANDMARKS_POSE
from pltd.vectors import l2_normalize


class EvalModel:
    @classmethod
    def live(cls, net: torch.nn.Module, contract: InputContract, device: str) -> EvalModel:
        """Wrap a network being trained (the trainer's periodic verification), fed as it is trained."""
        m = cls.__new__(cls)
        m.net, m.contract, m.device, m.batch_size = net, contract, device, 128
        return m

    @property
    def size(self) -> int:
        return self.contract.input_size

    def __init__(self, path: str | Path, device: str | None = None, batch_size: int = 128):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} not found")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if path.name.endswith(".torchscript.pt"):  # a bare network: pltd's contract at 112 assumed
            self.net, self.contract = torch.jit.load(str(path), map_location=self.device), InputContract()
        else:
            ck = torch.load(path, map_location="cpu", weights_only=True)
            from pltd.checkpoints import load_model

            self.net, ck = load_model(path, ck.get("task"), "model")
            self.contract = ck["input"]
            self.net.to(self.device)
        self.net.eval()
        self.batch_size = batch_size

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """N x S x S x 3 uint8 RGB, fed through the network's input contract → dict of numpy outputs
        (embedding, landmarks (N,68,2 fractions), pose)."""
        outs: dict[str, list] = {}
        with torch.inference_mode():
            for x in self.contract.torch_batches(images, self.device, self.batch_size):
                out = self.net(x)
                if not isinstance(out, dict):
                    out = split_landmarks_pose(out) if out.shape[1] == LANDMARKS_POSE else {"embedding": out}
                for k, v in out.items():
                    outs.setdefault(k, []).append(v.float().cpu().numpy())
        res = {k: np.concatenate(v) for k, v in outs.items()}
        if "landmarks" in res:
            res["landmarks"] = res["landmarks"].reshape(-1, 68, 2)
        return res

    def flip_sum(self, images: np.ndarray) -> np.ndarray:
        """Embedding of each image plus that of its mirror, NOT normalised (insightface's IJB-C
        features: the norm is kept so that it weights the template average)."""
        return self(images)["embedding"] + self(images[:, :, ::-1])["embedding"]

    def embed_with_flip(self, images: np.ndarray) -> np.ndarray:
        """The flip-summed embedding, L2-normalised (insightface's verification protocol)."""
        e = self.flip_sum(images)
        return l2_normalize(e, axis=1, dtype=None)
