"""SignCertificate (OCPP 1.6 security extension): the verdict on a charger's CSR, recorded
with the answer, and, once ``Accepted`` is sent, the signing and the CertificateSigned CALL
that delivers the chain.

The verdict is a pure function of the CALL (``hub.domain.certificates.check_csr``) and is
stored as an event when it refuses; what signing produced (serial, validity, the public
chain) is stored as ``certificate.issued`` before the chain goes out, so a replay has it
without signing anything again.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Final

import msgspec
import structlog

from hub.ca import CertificateAuthority, Issued, SigningFailed
from hub.clock import now_ms
from hub.commands import finished_event
from hub.domain.certificates import Verdict, check_csr
from hub.gateway.protocol import Exchange, Link, Received, Signing, event_id
from schemas.commands import CommandRequest
from schemas.events import (
    CertificateIssued,
    CertificateRefusal,
    CertificateRefused,
    CommandRequested,
)
from schemas.ocpp import v16, v21, v201

if TYPE_CHECKING:
    from hub.bus import EventStore
    from hub.gateway.connection import ChargerConnection

log = structlog.get_logger("hub.gateway")

# CertificateSigned command ids (OCPP-J unique ids) from the SignCertificate they answer.
_COMMANDS: Final = uuid.UUID("1c3e4a52-0d7b-4f0e-8a61-5e2b9c7d40f3")
DELIVERY_TIMEOUT_S: Final = 30.0
BUSY: Final = Verdict(
    reason="busy", detail="the charger's previous CSR is still being signed and delivered"
)
_encoder: Final = msgspec.json.Encoder()


# The SignCertificate request of each OCPP version.
SignRequest = v16.SignCertificateRequest | v201.SignCertificateRequest | v21.SignCertificateRequest
# What the hub's CA issues: a charging station's own (client TLS) certificate.
_STATION: Final = "ChargingStationCertificate"


def verdict(
    ca: CertificateAuthority, known: bool, charge_point_id: str, request: SignRequest
) -> Verdict:
    """Whether the CSR of ``request`` will be signed. Runs off the event loop (it verifies
    a signature)."""
    if not isinstance(request, v16.SignCertificateRequest) and request.certificate_type not in (
        msgspec.UNSET,
        _STATION,
    ):
        kind = request.certificate_type
        return Verdict(reason="wrong_type", detail=f"the hub's CA does not issue {kind}s")
    if not ca.available():
        return Verdict(reason="no_ca", detail="no certificate authority is configured")
    if not known:
        return Verdict(
            reason="unknown_charger",
            detail="the charger is not registered, so nothing proves its id",
        )
    return check_csr(request.csr, charge_point_id)


def judged(
    link: Link, exchange: Exchange, decided: Verdict, request: SignRequest, received: Received
) -> Exchange:
    """The SignCertificate exchange with what becomes of its CSR: to be signed once the
    answer is out, or refused, the reason stored with the ``Rejected`` answer."""
    unique_id, position = exchange.unique_id, received.position
    if decided.reason is None:
        return msgspec.structs.replace(
            exchange,
            signing=Signing(
                csr=request.csr,
                unique_id=unique_id,
                position=position,
                request_id=_request_id(request),
            ),
        )
    refused = refusal(link, unique_id, position, decided.reason, decided.detail, at=received.at)
    *call, answer = exchange.events
    return msgspec.structs.replace(exchange, events=[*call, refused, answer])


def refusal(
    link: Link,
    unique_id: str,
    position: int,
    reason: CertificateRefusal,
    detail: str,
    *,
    at: int,
) -> CertificateRefused:
    return CertificateRefused(
        id=event_id(link, "certificate", str(position)),
        received_at=at,
        charge_point_id=link.charge_point_id,
        gateway_id=link.gateway_id,
        connection_id=link.connection_id,
        unique_id=unique_id,
        reason=reason,
        detail=detail,
    )


def command_id_for(link: Link, signing: Signing) -> str:
    return uuid.uuid5(_COMMANDS, f"{link.connection_id}:{signing.position}").hex


def issued_events(
    link: Link, signing: Signing, issued: Issued, *, actor: str, at: int
) -> tuple[CertificateIssued, CommandRequested]:
    """What is stored before the chain goes out: the certificate, and the command that
    delivers it (audited like an operator's, with the gateway as actor)."""
    command_id = command_id_for(link, signing)
    leaf = issued.leaf
    certificate = CertificateIssued(
        id=event_id(link, "certificate", str(signing.position)),
        received_at=at,
        charge_point_id=link.charge_point_id,
        gateway_id=link.gateway_id,
        connection_id=link.connection_id,
        unique_id=signing.unique_id,
        command_id=command_id,
        serial=leaf.serial,
        subject=leaf.subject,
        not_before=leaf.not_before,
        not_after=leaf.not_after,
        issuer=issued.issuer,
        chain=issued.chain,
    )
    requested = CommandRequested(
        id=f"{command_id}:requested",
        received_at=at,
        actor=actor,
        command_id=command_id,
        charge_point_id=link.charge_point_id,
        action="CertificateSigned",
        payload=msgspec.Raw(_encoder.encode(_signed(issued.chain, signing.request_id))),
        timeout_s=DELIVERY_TIMEOUT_S,
    )
    return certificate, requested


def _request_id(request: SignRequest) -> int | None:
    if isinstance(request, v21.SignCertificateRequest) and isinstance(request.request_id, int):
        return request.request_id
    return None


def _signed(chain: str, request_id: int | None) -> dict[str, object]:
    # 2.1 ties the CertificateSigned to its SignCertificate by the id the charger chose.
    if request_id is None:
        return {"certificateChain": chain}
    return {"certificateChain": chain, "requestId": request_id}


async def deliver(
    ca: CertificateAuthority,
    store: EventStore,
    connection: ChargerConnection,
    link: Link,
    signing: Signing,
    *,
    actor: str,
) -> None:
    """Sign the CSR, store the outcome, then send the chain in CertificateSigned and store
    what the charger answered. The connection takes the charger's next CSR once the outcome
    is known (before it is stored, so whoever sees it stored can send the next one)."""
    bound = log.bind(charge_point_id=link.charge_point_id, unique_id=signing.unique_id)
    connection.signing = True
    try:
        try:
            issued = await ca.sign(signing.csr)
        except SigningFailed as error:
            failed = refusal(
                link, signing.unique_id, signing.position, "ca_failed", str(error), at=now_ms()
            )
            connection.signing = False
            await store.store([failed])
            bound.warning("certificate.refused", reason="ca_failed")
            return
        certificate, requested = issued_events(link, signing, issued, actor=actor, at=now_ms())
        await store.store([certificate, requested])
        reply = await connection.call(
            CommandRequest(
                command_id=requested.command_id,
                action=requested.action,
                payload=requested.payload,
                timeout_s=requested.timeout_s,
            )
        )
    finally:
        connection.signing = False
    await store.store([finished_event(requested, reply, now_ms())])
    bound.info(
        "certificate.issued",
        serial=certificate.serial,
        command_id=requested.command_id,
        outcome=reply.status,
    )
