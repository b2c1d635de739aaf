"""The pipeline's stages (Beam composites) and the pure record logic they wire together."""

METRICS_NAMESPACE = "cloud_import_prep"
