"""The OCPP-J gateway: a pure protocol core (frames, handlers, protocol), a thin I/O shell."""
