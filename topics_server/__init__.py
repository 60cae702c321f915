"""The topics reference server: the whole ``/v0`` contract on an embedded store."""

__version__ = "0.1.0"
