"""The agent side: how work reaches targets and their reports come back (docs/mqtt.md).

``opstatus.bridges.mqtt`` holds the MQTT bridge; it needs the ``mqtt`` extra
(``pip install 'opstatus[mqtt]'``), so it is imported only when a broker is configured.
"""

from __future__ import annotations
