"""``python -m opstatus.cli``: the ``opstatus`` command."""

from __future__ import annotations

from opstatus.cli import main

main()
