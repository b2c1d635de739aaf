"""Cloud Import Prep's launch side: options, the launch plan, the entry point and the run summary."""

TOOL_NAME = "cloud-import-prep"
__version__ = "0.1.0"
