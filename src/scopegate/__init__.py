"""scopegate: least-privilege credentials for APIs that AI agents act on."""

__version__ = "0.1.0"
