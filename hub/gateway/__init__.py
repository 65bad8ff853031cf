"""The OCPP-J gateway: a pure protocol core (frames, handlers, session) and a thin WebSocket shell."""
