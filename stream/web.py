"""Read-only HTTP endpoints on the worker's web port: these and nothing else.

Faust's own views (``/table/...`` with every user's state, ``/router/``,
statistics, graph, the index page) are turned off in ``stream.app``; any other
path is 404.

- ``GET /metrics``: Prometheus text format (names in docs/metrics.md).
- ``GET /healthz``: 200 while the process runs its event loop.
- ``GET /readyz``: 200 when a bundle is loaded, partitions are assigned, the
  catalog is caught up and the agent has not failed; 503 (with the reasons as
  JSON) otherwise. A failed agent also stops the process (``stream.app``).
- ``GET /trending``: the most clicked items of the current window (this worker's users).
- ``GET /users/{user_id}/recommendations``: the latest recommendation this
  worker emitted for that user (users on its partitions, most recent 100k);
  404 if it has none. Faust's ``table_route`` could forward to the owning
  worker, but it has an open multi-worker bug (#514), so we do not route.
  Its "because" names items the user consumed: served only while
  ``RECSTREAM_WORKER_SERVE_USER_RECOMMENDATIONS`` is true (the default); off,
  the path is 404 and the worker keeps no per-user results.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from stream.faust_compat import drop_faust_index
from stream.latest import LatestRecommendations
from stream.metrics import CONTENT_TYPE_LATEST, WorkerMetrics
from stream.readiness import Readiness
from stream.trending import Trending


def register_views(
    app: faust.App,
    *,
    metrics: WorkerMetrics,
    readiness: Readiness,
    trending: Trending,
    latest: LatestRecommendations | None,
) -> None:
    """Serve the endpoints above on ``app``'s web server; ``latest`` None: no
    ``/users/{id}/recommendations`` (``RECSTREAM_WORKER_SERVE_USER_RECOMMENDATIONS``)."""
    drop_faust_index(app)  # Faust has no setting for its "/" page

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type; the exposition is UTF-8.
            content_type = CONTENT_TYPE_LATEST.split("; charset")[0]
            return self.bytes(metrics.render(), content_type=content_type)

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            state = readiness.state()
            return self.json(state, status=200 if state["ready"] else 503)

    @app.page("/trending")
    class TrendingItems(View):
        async def get(self, request: Request) -> Response:
            top = trending.top(20)
            return self.json({"items": [{"item_id": i, "clicks": n} for i, n in top]})

    if latest is None:
        return
    users = latest

    @app.page("/users/{user_id}/recommendations")
    class UserRecommendations(View):
        async def get(self, request: Request, user_id: str) -> Response:
            value = users.get(user_id)
            if value is None:
                body: dict[str, Any] = {
                    "error": f"no recommendation for user {user_id!r} on this worker",
                    "hint": "a user's latest result lives on the worker owning its partition",
                }
                return self.json(body, status=404)
            # the record value as produced: the same JSON the topic carries
            return self.bytes(value, content_type="application/json")
