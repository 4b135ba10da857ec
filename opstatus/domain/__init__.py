"""Pure domain: states and the transition table, records, derivations, errors.

Nothing here performs I/O or imports a framework; every other layer asks it.
"""
