"""The package's version, in a leaf module: any layer may show it without importing the
package root (which import-linter's graph would tie to the script form at the repo root)."""

__version__ = "0.1.0"
