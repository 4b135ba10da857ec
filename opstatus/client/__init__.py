"""The SDK: :class:`Client` and :class:`AsyncClient` over sans-IO flows (``_protocol``),
typed results (``_models``, the server's own wire Structs) and one exception hierarchy
(``_exceptions``).

It imports no server module: ``from opstatus import Client`` loads none of starlette,
asyncpg, prometheus_client, limits, uvicorn or aiomqtt.
"""

from __future__ import annotations
