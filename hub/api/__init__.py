"""The command API: server-initiated OCPP operations over REST (docs/command-api.md).

It lives in the fan-out's aiohttp app (``hub.api.http.setup``), reusing its token verifier
and its live charger state. Nothing is imported here, so the fan-out's pure core can use
``hub.domain.command_tracking`` without pulling in the HTTP shell.
"""
