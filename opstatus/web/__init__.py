"""HTTP plumbing every API shares: endpoints as data, authentication, parameters,
rendering, problems, rate limits, middleware and metrics.

The canonical API (:mod:`opstatus.api`) and the vendor dialects (:mod:`opstatus.dialects`)
both stand on this package; it imports neither.
"""

from __future__ import annotations
