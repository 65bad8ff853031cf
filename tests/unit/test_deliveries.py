"""Telling a delivery lost on the way from a consumer's own numbering, without NATS."""

from __future__ import annotations

from hub.pull import DeliveryCheck, delivered, delivery


def test_deliveries_numbered_one_after_another_lost_nothing() -> None:
    check = DeliveryCheck()
    assert all(check.arrived(number) for number in range(1, 6))


def test_a_number_skipped_is_a_delivery_lost() -> None:
    # A filtered consumer's stream seqs skip other subjects' events; its delivery numbers
    # skip only what never arrived.
    check = DeliveryCheck()
    assert check.arrived(1) and check.arrived(2)
    assert not check.arrived(4)


def test_the_first_delivery_of_a_consumer_lost_is_seen() -> None:
    assert not DeliveryCheck().arrived(2)
    # A consumer that had delivered 7 when this started pulling goes on at 8.
    assert DeliveryCheck(delivered=7).arrived(8)


def test_a_number_that_goes_back_is_a_redelivery_not_a_loss() -> None:
    # A consumer's new leader on a cluster may not know how far the old one got.
    check = DeliveryCheck()
    assert check.arrived(1) and check.arrived(2) and check.arrived(3)
    assert check.arrived(2) and check.arrived(3) and check.arrived(4)


def test_a_loss_at_the_tail_is_seen_at_the_second_idle_look() -> None:
    check = DeliveryCheck()
    assert check.arrived(1)
    # The server counts 3 deliveries: 2 and 3 may still be on their way.
    assert not check.idle(3)
    assert check.idle(3)


def test_a_delivery_on_its_way_at_an_idle_look_is_no_loss() -> None:
    check = DeliveryCheck()
    assert check.arrived(1)
    assert not check.idle(2)
    assert check.arrived(2)
    assert not check.idle(2) and not check.idle(2)


def test_idle_looks_with_nothing_missing_find_no_loss() -> None:
    check = DeliveryCheck()
    assert not check.idle(0) and not check.idle(0)
    assert check.arrived(1)
    assert not check.idle(1) and not check.idle(1)


def test_the_ack_subject_gives_stream_seq_delivery_number_and_pending() -> None:
    reply = "$JS.ACK.OCPP_EVENTS.follow.1.120.7.1700000000000000000.3"
    assert delivery(reply) == (120, 7, 3)
    assert delivered(reply.encode()) == (120, 3)
    v2 = "$JS.ACK.domain.ACCOUNTHASH.OCPP_EVENTS.follow.1.120.7.1700000000000000000.3.token"
    assert delivery(v2) == (120, 7, 3)
    assert delivered(v2.encode()) == (120, 3)
