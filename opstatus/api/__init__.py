"""HTTP layer: the app factory (the one composition root) and, later, the routes."""

from __future__ import annotations

from opstatus.api.app import create_app

__all__ = ["create_app"]
