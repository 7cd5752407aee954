"""pltd framework: CLI, manifest config, Dask cluster profiles, stage runner, Parquet storage, schemas.

Only this package knows about Dask; stages (``stages/``) are plain functions over one partition.
"""
