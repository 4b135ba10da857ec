"""Use cases on top of the Store port; no web framework, no SQL."""
