"""Developer tools that stand apart from the runtime: the charger simulator and the OCPP
code generator. Runtime code never imports them (tests/test_layers.py)."""
