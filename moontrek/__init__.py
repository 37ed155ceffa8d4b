"""moontrek: the Moon-Trek registration server."""

__version__ = "0.1.0"
