"""The supervisor: money and session integrity, derived from the event stream."""
