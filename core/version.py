"""The vitc version (also the package version: pyproject.toml reads it from here)."""
VERSION = "0.2.0"
