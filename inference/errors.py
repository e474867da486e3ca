"""Errors raised by the serving core (all under :class:`recstream.errors.RecstreamError`).

BundleError (recstream.errors)
├── BundleNotFoundError      the directory or its manifest.json does not exist
├── BundleManifestError      manifest.json is unreadable or lacks a required entry
├── BundleFileMissingError   a file listed in the manifest is not on disk
├── BundleUnexpectedFileError a file on disk is not listed in the manifest
├── BundleHashError          a file's sha256 differs from the manifest
└── BundlePointerError       a pointer file (CURRENT) names no bundle inside its root
InferenceError
└── UnknownItemError         an item id the index does not hold
"""

from __future__ import annotations

from recstream.errors import BundleError, RecstreamError

_REBUILD = "rebuild or re-copy the bundle (it is written aside and renamed when complete)"


class BundleNotFoundError(BundleError):
    """The bundle directory or its manifest.json does not exist."""


class BundleManifestError(BundleError):
    """manifest.json is not valid JSON or lacks a required entry."""


class BundleFileMissingError(BundleError):
    """A file listed in the manifest's ``files`` is missing."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"bundle file {path!r} is listed in manifest.json but missing: {_REBUILD}")


class BundleUnexpectedFileError(BundleError):
    """A file in the bundle directory is not listed in the manifest's ``files``."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"bundle file {path!r} is not listed in manifest.json: the bundle was changed after it "
            f"was sealed; remove the file or {_REBUILD}"
        )


class BundleHashError(BundleError):
    """A file's sha256 differs from the manifest's."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        self.path = path
        super().__init__(
            f"bundle file {path!r} has sha256 {actual[:12]}… but manifest.json says "
            f"{expected[:12]}…: the file was modified or truncated; {_REBUILD}"
        )


class BundlePointerError(BundleError):
    """A bundles root's pointer file (``CURRENT``) names nothing servable inside the root."""


class InferenceError(RecstreamError):
    """The serving core was asked something it cannot do."""


class UnknownItemError(InferenceError, KeyError):
    """An item id the index does not hold."""
