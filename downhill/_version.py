"""The version of downhill (read by the build, from here, without importing the package)."""

__version__ = '0.6.0'
