"""Face-recognition backends: dlib on real faces; torch backends with random weights (plumbing only)."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from pltd.checkpoints import save_checkpoint
from pltd.networks import create
from pltd.stages.identities.align import ARCFACE_112, arcface_crop, five_points, similarity
from pltd.stages.identities.networks import create_network
from pltd.stages.landmarks.sources import create_source
from pltd.stages.landmarks.views import make_views


@pytest.fixture(scope="module")
def astronaut():
    image = skimage.data.astronaut()
    view = make_views(image, np.array([175.0, 76.0, 265.0, 166.0]), 1, 256, seed=0)[0]
    lm = view.to_source(create_source("dlib68", mean_face=None)([view])[0].landmarks)
    return image, lm


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a = np.radians(20)
    m = np.array([[2 * np.cos(a), -2 * np.sin(a), 5], [2 * np.sin(a), 2 * np.cos(a), -3]])
    assert np.allclose(similarity(src, src @ m[:, :2].T + m[:, 2]), m)


def test_arcface_crop_puts_the_eyes_on_the_template(astronaut):
    image, lm = astronaut
    crop = arcface_crop(image, lm)
    m = similarity(five_points(lm), ARCFACE_112)
    mapped = five_points(lm) @ m[:, :2].T + m[:, 2]
    assert crop.shape == (112, 112, 3) and np.abs(mapped - ARCFACE_112).max() < 6


def test_dlib_descriptor_same_face_close_other_face_far(astronaut):
    image, lm = astronaut
    net = create_network("dlib")
    flipped = image[:, ::-1].copy()
    lm_f = lm.copy()
    lm_f[:, 0] = image.shape[1] - 1 - lm_f[:, 0]
    from pltd.stages.landmarks.ibug import MIRROR68 as _MIRROR68

    e = net([image, flipped], [lm, lm_f[_MIRROR68]])
    assert e.shape == (2, 128) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert float(e[0] @ e[1]) > 0.95  # a mirror image of the same face


def test_checkpoint_network_random_weights_plumbing(tmp_path, astronaut):
    image, lm = astronaut
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "fr.pt", create("resnet_tiny", num_outputs=512), "resnet_tiny", "face_recognition", 112,
                    arch_kwargs={"num_outputs": 512})  # fmt: skip
    net = create_network("checkpoint", str(tmp_path / "fr.pt"))
    e = net([image, image], [lm, lm])
    assert e.shape == (2, 512) and np.allclose(e[0], e[1], atol=1e-5)


def test_facenet_random_weights_plumbing(tmp_path, astronaut):
    from pltd.stages.identities.networks import _facenet_module

    image, lm = astronaut
    torch.save(_facenet_module().InceptionResnetV1(pretrained=None).state_dict(), tmp_path / "facenet.pt")
    net = create_network("facenet", str(tmp_path / "facenet.pt"))
    e = net([image], [lm])
    assert e.shape == (1, 512) and np.isclose(np.linalg.norm(e), 1, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="weights file .*missing.pt not found"):
        create_network("facenet", str(tmp_path / "missing.pt"))
