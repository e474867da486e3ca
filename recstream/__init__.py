"""recstream: a real-time, open-ended streaming recommender.

Shared core used by every top-level package: settings, errors, event schemas,
logging, the local Kafka broker and the ``recstream`` command line.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
