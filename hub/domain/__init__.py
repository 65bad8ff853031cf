"""The charging domain: what the events mean, as pure functions every part of the hub shares.

Nothing here does I/O or imports from the layers above it (the bus, the gateway, the
projections, the fan-out, the API); tests/test_layers.py keeps it so.
"""
