"""The stand-in mode for developers of clients (``opstatus serve --testing``).

Off unless the server runs with the flag: then ``/v1/testing/*`` (admin keys, scoped to
the caller's tenant) injects faults (:mod:`.faults`), drives targets labelled
``scenario`` without agents (:mod:`.scenarios`), moves the service's clock, resets a
tenant and lists recent requests (:mod:`.journal`); :mod:`.middleware` applies faults
and keeps the journal, :mod:`.routes` serves the API and :mod:`.pytest_plugin` gives
client tests a server. See docs/testing.md.
"""

from __future__ import annotations
