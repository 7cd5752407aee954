"""Algorithm 1's fitting step as a fusion of sources (`landmarks.fusion: consensus`, the default).

Why not the paper's selective fitting. Measured on AFLW2000-3D, the samples that "drop the farthest
from the mean" keeps come from one source: the views of one network agree with each other even
when they are all wrong, so the rule converges on the most self-consistent network, not the most
accurate one, and its spread test accepts nearly everything. Views of one network are not
independent evidence; a mirrored view largely is (a network's left–right bias changes sign), and
two networks trained on different data are.

The consensus, per image (no weight or threshold is fitted to any evaluation data):

1. Per source, a robust estimate: the per-coordinate median of its valid samples (direct and
   mirrored views, every point already back in source pixels).
2. Per source, its expected squared error u²: the mean over the inner points' coordinates of the
   squared difference between the median of its direct samples and that of its mirrored ones (with
   no mirrors, the samples' variance about their median; one sample alone, (t_d · face)²), plus a
   floor (`FLOOR` · face)² — no number of views makes a network better than about 1 % of the face.
   The mirror sees a source's left–right errors, not the symmetric ones, and a source whose points
   are not 300W-LP's own has one the mirror cannot see: its definition of the points (MediaPipe's
   mesh vertices through an index map; dlib's near-frontal 300-W training). Where a *reference*
   source is configured (`LandmarkSource.reference`: trained on 300W-LP's 68 points at every pose —
   3DDFA_V2, pltd's teachers), every other source's u² also counts its squared disagreement with the
   references' estimate (same inner-point mean). Without a reference, nothing is added. On
   AFLW2000-3D this moved the 30–60° and 60–90° bins at 112 px below one 3DDFA_V2 pass (docs/labels.md).
3. The label: the inner points 17–67 (the same in both jaw styles) are the u⁻²-weighted mean of
   the sources' estimates; the jaw points 0–16 the same mean over the sources of the PLTD's
   `jaw_style` only (another style's jaw is a different point).
4. Its expected error (`fit_error`): for each point, the root mean square distance of the samples
   that may give it (jaw: the style's sources; inner: all) to the label, averaged over the 68
   points, divided by the label's face size (the NME normaliser). A source that refines its own
   crop (3DDFA_V2's landmark re-crop) adds its earlier passes' points here: where the first crop and
   the refined one disagree the face is hard, which the refined views alone hide (on AFLW2000-3D this
   raised fit_error's rank correlation with the true NME from 0.59 to 0.66). A view in which a
   configured source gives no valid sample (MediaPipe finds no face, a network's points are
   invalid) is missing evidence: it counts as one sample at the prior distance t_d · face, the
   prior step 2 gives a source with one sample. It moves each point's error towards t_d, so it
   changes the ranking far more than the acceptance (on AFLW2000-3D it rejected no more faces at
   either resolution). The faces one network alone labels are the hard ones (on AFLW2000-3D at
   112 px, NME68 4.7 % against 3.2 %), and without it their fit_error was that network's spread
   alone: the rank correlation at 112 px rises from 0.58 to 0.63 this way (at 450 px it stays
   0.66). A label above t_d is rejected (`fit_error_above_td`).
5. The points a pose fit reads. `pose_from: blend`: the inner points weighted by the mirror tests
   alone, without step 2's reference term. The blend averages that fit with the reference teacher's
   regressed pose, and a fit of the label itself, which leans on the same teacher, would repeat it:
   on AFLW2000-3D (450 px) the blend's pose MAE is 3.24° this way, 3.47° with the label, 3.57° with
   the references' points. `pose_from: fit`, a pose that stands alone: the references' estimate
   (mirror-weighted among them) when a reference is configured. The mean face is 300W-LP's frame
   and only a reference gives 300W-LP's points; a fit of another source's points turns its
   definition of them into a pose bias (MediaPipe alone: +4.8° of pitch). Measured (450 / 112 px):
   pitch bias +0.4° / −0.5° this way, +2.3° / +1.5° with the mirror-weighted points, at a pose MAE
   of 3.89° / 3.79° against 3.76° / 3.89°. Without a reference the fit reads the mirror-weighted points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pltd.stages.landmarks.fitting import Fit
from pltd.stages.landmarks.geometry import RIGID_POINTS, face_size

JAW = np.arange(17)
FLOOR = 0.01  # the smallest expected error of a source's estimate, in face sizes (a prior, not fitted)


@dataclass(frozen=True)
class SourceSamples:
    """The valid samples of one source on one image, in source pixels."""

    points: np.ndarray  # (k, 68, 2)
    mirrored: np.ndarray  # (k,) bool: the sample came from a mirrored view
    jaw_style: str  # "2d" | "3d"
    # the source's earlier answers on the same views (a refining network's first crop pass): evidence
    # of how hard the face is, counted in the expected error, not in the label
    earlier: np.ndarray | None = None  # (j, 68, 2)
    reference: bool = False  # the source gives 300W-LP's own points at every pose (module docstring, 2)
    # the views in which this configured source gave no valid sample (no face found, invalid points):
    # missing evidence, counted in the expected error at the prior distance (module docstring, 4)
    missing: int = 0

    def every(self) -> np.ndarray:
        """The samples and the earlier answers: what the expected error looks at."""
        if self.earlier is None or not len(self.earlier):
            return self.points
        return np.concatenate([self.points, self.earlier])


def source_estimate(s: SourceSamples, prior: float) -> tuple[np.ndarray, float]:
    """(68, 2) median of the samples and their expected squared error per inner coordinate (pixels²)."""
    est = np.median(s.points, axis=0)
    direct, mirrored = s.points[~s.mirrored], s.points[s.mirrored]
    if len(direct) and len(mirrored):
        d = np.median(direct, axis=0) - np.median(mirrored, axis=0)
        u2 = float(np.mean(d[RIGID_POINTS] ** 2))
    elif len(s.points) > 1:
        u2 = float(np.mean((s.points[:, RIGID_POINTS] - est[RIGID_POINTS]) ** 2))
    else:
        u2 = prior**2
    return est, u2


def weighted(estimates: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    w = weights / weights.sum()
    return np.einsum("k,kij->ij", w, np.stack(estimates))


def consensus(sources: list[SourceSamples], jaw_style: str, t_d: float, min_samples: int = 3) -> Fit:
    """The fused label of one image from its sources' samples (module docstring); kept = every sample."""
    n = sum(len(s.points) for s in sources)
    missing = (sum(s.missing for s in sources), sum(s.missing for s in sources if s.jaw_style == jaw_style))
    sources = [s for s in sources if len(s.points)]
    if n < min_samples or not sources:
        return Fit(None, None, [], float("nan"), float("nan"), "too_few_valid_samples")
    styled = [i for i, s in enumerate(sources) if s.jaw_style == jaw_style]
    if not styled:
        return Fit(None, None, [], float("nan"), float("nan"), "no_jaw_source")
    size = face_size(np.median(np.concatenate([s.points for s in sources]), axis=0))
    est, var = zip(*(source_estimate(s, t_d * size) for s in sources), strict=True)
    floor = (FLOOR * size) ** 2
    mirror_only = 1.0 / (np.array(var) + floor)
    var = np.array(var) + definition_error(list(est), np.array(var) + floor, [s.reference for s in sources])
    w = 1.0 / (var + floor)
    label = weighted(list(est), w)
    label[JAW] = weighted([est[i] for i in styled], w[styled])[JAW]
    fit_error, max_distance = expected_error(label, sources, styled, missing, t_d)
    reason = "fit_error_above_td" if fit_error > t_d else None
    if reason:
        return Fit(None, None, list(range(n)), fit_error, max_distance, reason)
    # the points the pose's fit reads (step 5): `blend`, the sources weighted by their mirror tests alone;
    # `fit`, the references' estimate when a reference is configured
    refs = [i for i, x in enumerate(sources) if x.reference]
    reference_points = weighted([est[i] for i in refs], mirror_only[refs]) if refs else None
    return Fit(
        label, None, list(range(n)), fit_error, max_distance, None, weighted(list(est), mirror_only), reference_points
    )


def definition_error(estimates: list[np.ndarray], variances: np.ndarray, reference: list[bool]) -> np.ndarray:
    """Per source, the squared error its mirror test cannot see (module docstring, step 2): for a
    source that is not a reference, the mean over the inner points' coordinates of its squared
    difference from the references' inverse-variance mean; 0 for the references, and for every
    source when none (or only references) is configured."""
    refs = [i for i, r in enumerate(reference) if r]
    extra = np.zeros(len(estimates))
    if not refs or len(refs) == len(estimates):
        return extra
    ref = weighted([estimates[i] for i in refs], 1.0 / variances[refs])
    for i, r in enumerate(reference):
        if not r:
            extra[i] = float(np.mean((estimates[i] - ref)[RIGID_POINTS] ** 2))
    return extra


def expected_error(
    label: np.ndarray,
    sources: list[SourceSamples],
    styled: list[int],
    missing: tuple[int, int] = (0, 0),
    t_d: float = 0.0,
) -> tuple[float, float]:
    """(mean over points of the samples' RMS distance to the label, the largest sample's mean distance),
    both divided by the label's face size. `missing`: the samples the configured sources did not give
    (for the inner points; for the jaw, of the PLTD's style), each counted at the prior distance
    t_d · face size (module docstring, step 4)."""
    size = face_size(label)
    prior = (t_d * size) ** 2
    every = np.concatenate([s.every() for s in sources])
    jaw = np.concatenate([sources[i].every() for i in styled])

    def rms(samples: np.ndarray, points: np.ndarray, m: int) -> np.ndarray:
        d2 = np.sum((samples[:, points] - label[points]) ** 2, axis=2).sum(axis=0)
        return np.sqrt((d2 + m * prior) / (len(samples) + m))

    per_point = np.r_[rms(jaw, JAW, missing[1]), rms(every, RIGID_POINTS, missing[0])]
    worst = np.linalg.norm(every[:, 17:] - label[17:], axis=2).mean(axis=1).max()
    return float(per_point.mean() / size), float(worst / size)


def restyle_jaw(fit: Fit, points: list[np.ndarray], styles: list[str], jaw_style: str) -> Fit:
    """The paper's selective fitting in one jaw style: the label's jaw is the mean of the kept samples
    of that style (or of every valid sample of it when none was kept); none at all: `no_jaw_source`."""
    if fit.landmarks is None:
        return fit
    kept = [i for i in fit.kept if styles[i] == jaw_style]
    use = kept or [i for i, st in enumerate(styles) if st == jaw_style]
    if not use:
        return Fit(None, None, fit.kept, fit.fit_error, fit.max_distance, "no_jaw_source")
    label = fit.landmarks.copy()
    label[JAW] = np.mean([np.asarray(points[i]).reshape(68, 2)[JAW] for i in use], axis=0)
    return Fit(label, fit.pose, fit.kept, fit.fit_error, fit.max_distance, fit.reason)
