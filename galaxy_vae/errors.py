"""Errors a user can act on.

Every message says what was expected, what was found, and how to fix it, so a CLI user or a page
can show it verbatim. ``assert`` is kept for internal invariants only.
"""

from __future__ import annotations


class GalaxyVAEError(Exception):
    """Base class: an error caused by input the user controls (a file, an image, a flag)."""

    def __init__(self, what: str, *, expected: str, found: str, fix: str):
        self.what, self.expected, self.found, self.fix = what, expected, found, fix
        super().__init__(f"{what}: expected {expected}; found {found}. {fix}")


class DataError(GalaxyVAEError):
    """A dataset file or folder that cannot be used as it is."""


class ImageError(GalaxyVAEError):
    """An image (upload or file) that cannot be decoded or prepared."""


class CheckpointError(GalaxyVAEError):
    """A checkpoint that is unsafe, corrupt, or does not match its model."""


class FetchError(GalaxyVAEError):
    """A download that failed or did not match its published hash."""
