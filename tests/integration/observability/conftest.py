"""Reuse the stream fixtures (real broker, real worker processes, tiny real bundle)
and the deploy fixture (a real Prometheus) in one place."""

from tests.integration.deploy.conftest import start_prometheus
from tests.integration.stream.conftest import make_client, tiny_bundle_root, workers

__all__ = ["make_client", "start_prometheus", "tiny_bundle_root", "workers"]
