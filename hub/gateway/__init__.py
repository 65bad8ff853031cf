"""The OCPP-J gateway: a pure protocol core (frames, handlers, session), a thin I/O shell."""
