"""Dataset readers. Importing the package registers every built-in format (timm's way: no import
hides inside a lookup); a new format is a module here, imported below."""

from pltd.stages.readers import folders, insightface_rec, mat_datasets  # noqa: F401  (they register)
