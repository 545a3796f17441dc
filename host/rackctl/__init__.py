"""rackctl: host-side monitoring daemon and CLI for rack power-shelf and CDU boards."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rackctl")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
