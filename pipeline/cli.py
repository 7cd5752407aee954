"""The `pltd` command line; the only place that parses arguments."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.config import ManifestError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build pseudo-labeled face datasets (PLTD) on Dask and inspect them.",
    pretty_exceptions_enable=False,
)
# Logs and CI are not terminals: give tables room instead of Rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _fail(msg: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {msg}", highlight=False)
    raise typer.Exit(code)


def _parse_roots(values: list[str]) -> dict[str, str]:
    roots = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            _fail(f"--root {v!r}: expected NAME=PATH, e.g. --root vggface2=/data/vggface2/train")
        roots[name] = path
    return roots


@app.command()
def build(
    manifest: Annotated[Path | None, typer.Argument(help="Build recipe; default: the embedded sample.")] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Run directory (path or fsspec URL); default runs/<manifest name>."),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(help="Profile in dask_cluster.yaml (local, scheduler, slurm, kubernetes) or tcp://HOST:PORT."),
    ] = None,
    cluster_file: Annotated[
        Path | None, typer.Option(help="Cluster profile file; default ./dask_cluster.yaml.")
    ] = None,
    force: Annotated[list[str], typer.Option(help="Recompute STAGE and every stage after it (repeatable).")] = [],  # noqa: B006
    root: Annotated[list[str], typer.Option(help="Override a source root: NAME=PATH (repeatable).")] = [],  # noqa: B006
) -> None:
    """Run the pipeline's stages over a manifest's sources into RUN."""
    from pipeline.build import BuildError
    from pipeline.build import build as run_build
    from pipeline.cluster import load_profile
    from pipeline.config import default_manifest, load_manifest
    from pipeline.sample import default_sample_dir, make_sample
    from stages.readers.base import SourceError

    os.environ.setdefault("PLTD_SAMPLE_DIR", str(default_sample_dir()))
    path = manifest or default_manifest()
    try:
        m = load_manifest(path, roots=_parse_roots(root))
        profile = load_profile(cluster, cluster_file)
    except ManifestError as exc:
        _fail(str(exc))
    out = out or f"runs/{m.name}"
    if m.prepare == "sample":
        console.print(f"embedded sample: {make_sample(os.environ['PLTD_SAMPLE_DIR'])}")
    console.print(f"manifest [bold]{m.name}[/] ({path}) → {out}; cluster: {cluster or 'default profile'}")
    try:
        run_build(m, str(path), out, profile, list(force), console)
    except SourceError as exc:
        _fail(str(exc))
    except BuildError as exc:
        _fail(str(exc), code=1)


@app.command()
def inspect(run: Annotated[str, typer.Argument(help="Run directory written by `pltd build`.")]) -> None:
    """Print a run's counts, stage statistics and reconciliation."""
    from pipeline import storage
    from pipeline.reconcile import print_reconciliation

    build_url = storage.join(run, "build.json")
    if not storage.exists(build_url):
        _fail(f"{run}: no build.json — not a finished `pltd build` run directory")
    info = storage.read_json(build_url)
    for name, p in info["plans"].items():
        console.print(f"source [bold]{name}[/] ({p['format']}, {p['root']}): {p['images']} images")
    for stage in info["stages_run"]:
        s = storage.read_json(storage.join(run, "stats", f"{stage}.json"))
        console.print(
            f"stage [bold]{stage}[/]: {s['rows_in']} in → {s['rows_out']} out, rejected {s['rejected'] or 0}, "
            f"{s['partitions']} partitions, {s['task_seconds']:.1f} task-s, {s['wall_seconds']:.1f} s wall"
        )
    print_reconciliation(storage.read_json(storage.join(run, "reconciliation.json")), console)
    if info["stages_not_implemented"]:
        console.print("not implemented yet: " + ", ".join(info["stages_not_implemented"]))


@app.command()
def sample(
    out: Annotated[Path | None, typer.Option(help="Where to write it; default $PLTD_SAMPLE_DIR or ~/.cache.")] = None,
) -> None:
    """Write the embedded sample datasets (VGGFace2-, MS1MV3- and 300W-LP-style) and print where."""
    from pipeline.sample import default_sample_dir, make_sample

    target = out or Path(os.environ.get("PLTD_SAMPLE_DIR") or default_sample_dir())
    console.print(str(make_sample(target)))


def main() -> None:
    app(prog_name="pltd")


if __name__ == "__main__":
    sys.exit(main())
