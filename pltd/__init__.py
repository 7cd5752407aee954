"""pltd: pseudo-labeled training datasets for multitask face models (Lee et al., Sensors 2024).

This package is the ground floor: what both the labelling stages and the trainer need (record
schemas, the per-worker model cache, the network architectures, the checkpoint format, the one
registry class, the pose convention). Above it, mapped from the repository's top-level folders:
``pltd.stages`` (``stages/``) → ``pltd.trainer`` (``trainer/``) → ``pltd.pipeline`` (``pipeline/``).
Imports run only downward; ``tests/test_layers.py`` enforces it.
"""

__version__ = "0.2.0"
