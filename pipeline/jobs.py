"""Per-partition jobs of each stage: which partitions, and the compute that runs on a worker."""

from __future__ import annotations

from pltd.pipeline import storage
from pltd.pipeline.config import Manifest
from pltd.pipeline.plan import read_partition
from pltd.pipeline.runner import PartitionTask
from pltd.stages.assemble import AssembleSettings, assemble_partition
from pltd.stages.identities.embed import EmbedSettings, embed_partition
from pltd.stages.ingest import IngestSettings, ingest_partition
from pltd.stages.landmarks.stage import LandmarkSettings, label_partition
from pltd.stages.readers.base import Source


def ingest_compute(run: str, source: Source, part: int, settings: IngestSettings):
    plan = read_partition(run, source.name, part)
    accepted, rejected = ingest_partition(source, plan, settings)
    return accepted, rejected, plan.num_rows


def landmarks_compute(run: str, source: str, part: int, settings: LandmarkSettings):
    rows = storage.read_table(PartitionTask(run, "ingest", source, part).output)
    accepted, rejected = label_partition(rows, settings)
    return accepted, rejected, rows.num_rows


def embeddings_compute(run: str, source: str, part: int, settings: EmbedSettings):
    rows = storage.read_table(PartitionTask(run, "landmarks", source, part).output)
    ingest = storage.read_table(PartitionTask(run, "ingest", source, part).output)
    accepted, rejected = embed_partition(ingest, rows, settings)
    return accepted, rejected, rows.num_rows


def assemble_compute(run: str, source: str, part: int, id_map, after: str | None, settings: AssembleSettings):
    """PLTD rows of a partition; `after` is the last per-image stage before assemble."""
    ingest = storage.read_table(PartitionTask(run, "ingest", source, part).output)
    labels = storage.read_table(PartitionTask(run, "landmarks", source, part).output)
    keep = None
    if after == "embeddings":
        emb = storage.read_table(PartitionTask(run, "embeddings", source, part).output, columns=["image_id"])
        keep = set(emb.column("image_id").to_pylist())
    return assemble_partition(ingest, labels, keep, id_map, settings)


def stage_jobs(stage: str, run: str, manifest: Manifest, sources: list[Source], plans: dict, extra: tuple = ()) -> list:
    """(task, compute, args) for every partition of `stage`; partition ids follow the plan."""
    if stage == "ingest":
        settings = IngestSettings(**manifest.ingest.model_dump(exclude={"rows_per_partition"}))
        compute, head = ingest_compute, lambda s: (run, s)  # ingest needs the whole Source
    elif stage == "landmarks":
        settings = LandmarkSettings(**manifest.landmarks.model_dump())
        compute, head = landmarks_compute, lambda s: (run, s.name)
    elif stage == "embeddings":
        ident = manifest.identities
        settings = EmbedSettings(tuple(ident.networks), tuple(ident.checkpoints))
        compute, head = embeddings_compute, lambda s: (run, s.name)
    elif stage == "assemble":
        out = manifest.output
        settings = AssembleSettings(out.region_long_side, out.region_scale, out.jpeg_quality)
        compute, head = assemble_compute, lambda s: (run, s.name)
    else:
        raise ValueError(f"stage {stage!r} has no jobs")
    tail = (*extra, settings)
    return [
        (PartitionTask(run, stage, s.name, part), compute, (*head(s), part, *tail))
        for s in sources
        for part in range(plans[s.name]["partitions"])
    ]


def uses_gpu(stage: str, manifest: Manifest) -> bool:
    if stage == "embeddings":
        return any(n != "dlib" for n in manifest.identities.networks)
    return stage == "landmarks" and (manifest.landmarks.teacher == "resnet50" or manifest.landmarks.blink == "resnet18")
