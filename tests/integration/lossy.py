"""A pull answer lost on the way, made to order: the puller below never sees the first
delivery of the stream seqs it is told to lose. The server, a real nats-server, counted
them delivered, as it does for an answer lost in a cluster's consumer failover."""

from __future__ import annotations

from typing import ClassVar

from hub.pull import Puller, delivery


class LossyPuller(Puller):
    # Stream seqs whose next delivery is lost (each once).
    lose: ClassVar[set[int]] = set()
    # Those it lost.
    lost_seqs: ClassVar[list[int]] = []

    def _on_message(self, subject: str, reply: str, data: bytes, status: str) -> None:
        if reply.startswith("$JS.ACK."):
            seq = delivery(reply).seq
            if seq in self.lose:
                self.lose.discard(seq)
                self.lost_seqs.append(seq)
                return
        super()._on_message(subject, reply, data, status)
