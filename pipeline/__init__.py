"""Cloud Import Prep: options, entry point and run summary of the pipeline."""

TOOL_NAME = "cloud-import-prep"
__version__ = "0.1.0"
