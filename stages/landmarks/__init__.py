"""Algorithm 1. Importing the package registers every landmark source (`base.SOURCES`)."""

from pltd.stages.landmarks import facemesh, sources, tddfa  # noqa: F401
