"""The client side's agents: :mod:`runner` pulls work over HTTP and runs a command per
execution (``opstatus agent``); :mod:`simulate` plays a fleet of them (``opstatus simulate``).

Both speak to the server only through the SDK (:mod:`opstatus.client`).
"""

from __future__ import annotations
