"""The model bundle (docs/bundle.md): one owner for its format, writer, verifier and pointers.

- :mod:`~inference.bundle.manifest`: the typed :class:`Manifest` and the file names;
- :mod:`~inference.bundle.writer`: :func:`staging` / :meth:`Staging.seal`, the one writer;
- :mod:`~inference.bundle.verify`: :func:`open_bundle` / :func:`verify_bundle`, the one
  verifier (a file's hash is checked on the very bytes that are loaded);
- :mod:`~inference.bundle.load`: :func:`load_bundle`, a verified :class:`Bundle` in memory;
- :mod:`~inference.bundle.pointer`: :func:`resolve_bundle`, what a bundles root designates.
"""

from inference.bundle.load import Bundle, Item, load_bundle
from inference.bundle.manifest import FORMAT, MANIFEST, Manifest
from inference.bundle.pointer import CURRENT, bundle_created_ts, find_latest, resolve_bundle
from inference.bundle.verify import BundleFiles, open_bundle, sha256_file, verify_bundle
from inference.bundle.writer import Staging, staging

__all__ = [
    "CURRENT",
    "FORMAT",
    "MANIFEST",
    "Bundle",
    "BundleFiles",
    "Item",
    "Manifest",
    "Staging",
    "bundle_created_ts",
    "find_latest",
    "load_bundle",
    "open_bundle",
    "resolve_bundle",
    "sha256_file",
    "staging",
    "verify_bundle",
]
