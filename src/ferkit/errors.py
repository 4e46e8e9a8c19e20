"""Typed errors. Each message says what is wrong, where, and what to do; the CLI prints it as one
line and exits with code 2."""


class FerkitError(Exception):
    """Base class of the errors ferkit raises for bad input or configuration."""


class DataError(FerkitError):
    """A data source is missing, empty, malformed, or holds unreadable files."""


class ConfigError(FerkitError):
    """A configuration key, value, or name (model, optimizer, ...) is not valid."""


class CheckpointError(FerkitError):
    """A checkpoint cannot be read or does not match the architecture or labels asked for."""
