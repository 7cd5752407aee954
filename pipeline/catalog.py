"""The stages of `pltd build`, in order. Adding a stage is one class here and one entry in `STAGES`.

Computes run on workers; each reads its inputs through the run's layout and returns
(accepted, rejected, rows in) for the runner to write.
"""

from __future__ import annotations

from pltd.backends import Choice
from pltd.pipeline import storage
from pltd.pipeline.config import Manifest
from pltd.pipeline.layout import RunLayout, read_parts
from pltd.pipeline.plan import read_partition
from pltd.pipeline.stage import BuildContext, Stage
from pltd.stages.assemble import assemble_partition
from pltd.stages.identities.embed import EmbedSettings, embed_partition
from pltd.stages.ingest import ingest_partition, rows_in
from pltd.stages.landmarks.stage import label_partition
from pltd.stages.readers.base import Source

GROUND_TRUTH_FORMATS = ("300w_lp", "aflw2000")  # sources the landmarks audit compares against
MIN_FRONTAL_SHAPES = 20  # near-frontal 300W-LP shapes needed to make the run's own mean face


class Ingest(Stage):
    name = "ingest"
    sections = ("sources", "ingest")
    clears = ("plan",)  # --force ingest also re-lists the sources

    def compute(self, layout: RunLayout, source: Source, part: int, settings):
        plan = read_partition(layout.root, source.name, part)
        accepted, rejected = ingest_partition(source, plan, settings)
        return accepted, rejected, rows_in(plan, accepted, rejected)  # photos + faces beyond the first

    def row_keys(self, layout: RunLayout, source: Source, part: int) -> list[str]:
        """Ingest reads the plan: its rows are keyed by item (`isolate.restrict` filters plan tables by item)."""
        return read_partition(layout.root, source.name, part).column("item").to_pylist()


class Landmarks(Stage):
    name = "landmarks"
    sections = ("landmarks",)
    clears = ("audit",)

    def backends(self, manifest: Manifest) -> list[Choice]:
        return list(manifest.landmarks.backends().values())

    def packages(self, manifest: Manifest) -> set[str]:
        return super().packages(manifest) | {"mediapipe"}  # the face detector, for images without a box

    def model_files(self, manifest: Manifest) -> dict[str, tuple[bool, str | None]]:
        lm = manifest.landmarks
        return {
            **super().model_files(manifest),
            "landmarks.index_map": (False, lm.index_map),
            "landmarks.mean_face": (False, lm.mean_face if lm.mean_face != "shipped" else None),
        }

    def before(self, ctx: BuildContext) -> None:
        """With `mean_face: null` and 300W-LP sources: the paper's L_3D from their near-frontal ground
        truth, written to RUN/landmarks/mean_face.json and used by every task of this stage."""
        from pltd.stages.landmarks.mean_face import from_ground_truth, save_mean_face

        lm = ctx.manifest.landmarks
        w300 = [s.name for s in ctx.sources if s.format == "300w_lp"]
        if lm.mean_face is not None or not w300:
            return
        shapes = []
        for name in w300:
            t = read_parts(ctx.layout.stage_dir("ingest", name), columns=["landmarks_gt", "pose_gt"])
            if t is not None:
                pairs = zip(t.column("landmarks_gt").to_pylist(), t.column("pose_gt").to_pylist(), strict=True)
                shapes += [(lm_gt, pose) for lm_gt, pose in pairs if lm_gt is not None and pose is not None]
        made = from_ground_truth(shapes, min_shapes=MIN_FRONTAL_SHAPES)
        if made is None:
            ctx.console.print(
                f"landmarks: fewer than {MIN_FRONTAL_SHAPES} near-frontal ground-truth shapes in {', '.join(w300)}; "
                "pose fitting uses the shipped mean face"
            )
            return
        points, provenance = made
        path = ctx.layout.stage_file(self.name, "mean_face.json")
        save_mean_face(path, points, {**provenance, "sources": w300})
        ctx.manifest = ctx.manifest.model_copy(update={"landmarks": lm.model_copy(update={"mean_face": path})})
        ctx.console.print(
            f"landmarks: mean 3D face from {provenance['shapes']} near-frontal ground-truth shapes of "
            f"{', '.join(w300)} → {path}"
        )

    def compute(self, layout: RunLayout, source: Source, part: int, settings):
        rows = storage.read_table(layout.output("ingest", source.name, part))
        accepted, rejected = label_partition(rows, settings)
        return accepted, rejected, rows.num_rows

    def after(self, ctx: BuildContext) -> None:
        """Pseudo-labels against ground truth for sources that have it; saved and printed."""
        from pltd.stages.landmarks.audit import audit, format_audit

        with_gt = [s.name for s in ctx.sources if s.format in GROUND_TRUTH_FORMATS]
        tables = [t for s in with_gt if (t := read_parts(ctx.layout.stage_dir(self.name, s))) is not None]
        if not tables:
            return
        import pyarrow as pa

        report = audit(pa.concat_tables(tables))
        if ctx.manifest.prepare == "sample":
            # the sample's 300W-LP part is a reference made by two of the sources, with pose 0 assumed:
            # its audit checks the plumbing, it measures no accuracy (docs/labels.md has real figures)
            report["reference"] = "synthetic"
        storage.write_json(ctx.layout.audit(self.name), report)
        for line in format_audit(report):
            ctx.console.print(line, highlight=False)


class Embeddings(Stage):
    name = "embeddings"
    sections = ("identities",)

    def enabled(self, manifest: Manifest) -> bool:
        return manifest.identities is not None

    def settings(self, manifest: Manifest) -> EmbedSettings:
        ident = manifest.identities
        return EmbedSettings(tuple(ident.networks), tuple(ident.checkpoints), tuple(ident.architectures),
                             tuple(ident.onnx))  # fmt: skip

    def backends(self, manifest: Manifest) -> list[Choice]:
        return manifest.identities.backends()

    def compute(self, layout: RunLayout, source: Source, part: int, settings):
        rows = storage.read_table(layout.output("landmarks", source.name, part))
        ingest = storage.read_table(layout.output("ingest", source.name, part))
        accepted, rejected = embed_partition(ingest, rows, settings)
        return accepted, rejected, rows.num_rows


class Identities(Stage):
    """Algorithm 2 over every partition's sums: one result for the whole run (`pipeline/identities.py`)."""

    name = "identities"
    sections = ("identities",)
    kind = "global"

    def enabled(self, manifest: Manifest) -> bool:
        return manifest.identities is not None

    def packages(self, manifest: Manifest) -> set[str]:
        return {"faiss"} | ({"dlib"} if manifest.identities.thresholds is None else set())  # calibration: dlib68

    def model_files(self, manifest: Manifest) -> dict[str, tuple[bool, str | None]]:
        ident = manifest.identities
        files = {"identities.calibration_pairs": (ident.thresholds is None, ident.calibration_pairs)}
        if ident.calibration_pairs and not ident.calibration_pairs.endswith(".bin"):
            files["identities.calibration_images"] = (True, ident.calibration_images)
        return files

    def run_global(self, ctx: BuildContext) -> dict:
        from pltd.pipeline.identities import run_identities

        return run_identities(ctx.client, ctx.run, ctx.manifest.identities, ctx.sources, ctx.plans, ctx.console)


class Assemble(Stage):
    name = "assemble"
    sections = ("output",)
    clears = ("pltd",)  # the shards are cut from assemble's files

    def shared(self, ctx: BuildContext) -> tuple:
        """The (source, identity) → face_id map, sent to every worker once; whether rows must have an embedding."""
        from pltd.pipeline.publish import identity_map

        id_map = ctx.client.scatter(identity_map(ctx), broadcast=True)
        return id_map, Embeddings().enabled(ctx.manifest)

    def compute(self, layout: RunLayout, source: Source, part: int, settings, id_map, embedded: bool):
        ingest = storage.read_table(layout.output("ingest", source.name, part))
        labels = storage.read_table(layout.output("landmarks", source.name, part))
        keep = None
        if embedded:  # images the embeddings stage rejected are not in the PLTD
            emb = storage.read_table(layout.output("embeddings", source.name, part), columns=["image_id"])
            keep = set(emb.column("image_id").to_pylist())
        return assemble_partition(ingest, labels, keep, id_map, settings)


STAGES: tuple[Stage, ...] = (Ingest(), Landmarks(), Embeddings(), Identities(), Assemble())
STAGE_NAMES = tuple(s.name for s in STAGES)
