"""Evaluation protocols of the paper's tables: verification, IJB-C 1:1, AFLW2000-3D, BIWI, label audit."""
