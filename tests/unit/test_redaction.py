"""Secret configuration values are redacted in every stored copy, pure functions."""

from __future__ import annotations

import json

import msgspec

from hub.domain.redaction import (
    DEFAULT_SECRET_KEYS,
    parse_secret_keys,
    redact_payload,
    redact_text,
)
from hub.gateway.frames import Malformed
from hub.gateway.protocol import Link, Received, outbound_call, reject
from schemas.events import FrameRejected

KEYS = DEFAULT_SECRET_KEYS
LINK = Link(charge_point_id="CP-1", connection_id="c1", gateway_id="gw", ocpp_version="1.6")


def test_change_configuration_of_the_authorization_key_is_redacted_in_any_case() -> None:
    for key in ("AuthorizationKey", "authorizationkey", "AUTHORIZATIONKEY"):
        payload = json.dumps({"key": key, "value": "s3cret-s3cret-s3"}).encode()
        redacted = redact_payload("ChangeConfiguration", payload, KEYS)
        assert redacted is not None
        assert json.loads(redacted) == {"key": key, "value": "***"}


def test_other_keys_and_other_actions_are_left_alone() -> None:
    payload = b'{"key":"HeartbeatInterval","value":"60"}'
    assert redact_payload("ChangeConfiguration", payload, KEYS) is None
    transfer = b'{"vendorId":"v","data":"AuthorizationKey"}'
    assert redact_payload("DataTransfer", transfer, KEYS) is None


def test_get_configuration_answers_keep_everything_but_the_secret() -> None:
    answer = {
        "configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
            {"key": "AuthorizationKey", "readonly": False, "value": "s3cret"},
            {"key": "AuthorizationKey", "readonly": True},
        ],
        "unknownKey": ["AuthorizationKey"],
    }
    redacted = redact_payload("GetConfiguration", json.dumps(answer).encode(), KEYS)
    assert redacted is not None
    assert json.loads(redacted)["configurationKey"] == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
        {"key": "AuthorizationKey", "readonly": False, "value": "***"},
        {"key": "AuthorizationKey", "readonly": True},
    ]


def test_configured_keys_are_secret_too_and_authorization_key_always_is() -> None:
    keys = parse_secret_keys(" MeterPassword ,, wifiPsk")
    payload = b'{"key":"WIFIPSK","value":"hunter2"}'
    assert json.loads(redact_payload("ChangeConfiguration", payload, keys) or b"") == {
        "key": "WIFIPSK",
        "value": "***",
    }
    assert "authorizationkey" in keys


def test_redaction_is_deterministic() -> None:
    payload = b'{"key":"AuthorizationKey","value":"abc"}'
    first = redact_payload("ChangeConfiguration", payload, KEYS)
    assert first == redact_payload("ChangeConfiguration", payload, KEYS)
    assert first is not None and redact_payload("ChangeConfiguration", first, KEYS) is None


def test_raw_text_is_redacted_by_value_or_whole() -> None:
    frame = '[3,"x",{"configurationKey":[{"key":"AuthorizationKey","value":"abc"}]}]'
    assert json.loads(redact_text(frame, KEYS) or "")[2]["configurationKey"][0]["value"] == "***"
    assert redact_text(frame[:-5], KEYS) == "***"
    assert redact_text('[3,"x",{"key":"HeartbeatInterval"}]', KEYS) is None


def test_the_charger_gets_the_value_and_the_event_does_not() -> None:
    payload = msgspec.Raw(b'{"key":"AuthorizationKey","value":"s3cret-s3cret-s3"}')
    event, frame = outbound_call(LINK, "cmd-1", "ChangeConfiguration", payload, at=1)
    assert b"s3cret-s3cret-s3" in frame
    assert b"s3cret" not in msgspec.json.encode(event)


def test_a_rejected_frame_holding_a_secret_keeps_no_digest_of_it() -> None:
    data = b'[3,"x",{"configurationKey":[{"key":"AuthorizationKey","value":"' + b"k" * 600
    malformed = Malformed("not_json", "FormationViolation", "cut", answerable=False)
    [event] = reject(LINK, malformed, Received(data, 1, 1), raw_budget=100).events
    assert isinstance(event, FrameRejected)
    assert (event.raw, event.raw_truncated, event.raw_size, event.raw_sha256) == (
        "***",
        True,
        len(data),
        "",
    )


def _variable(component: str, variable: str, **value: str) -> dict[str, object]:
    return {"component": {"name": component}, "variable": {"name": variable}, **value}


def test_2x_basic_auth_password_is_redacted_in_set_get_variables_and_notify_report() -> None:
    secret = _variable("securityctrlr", "BASICAUTHPASSWORD", attributeValue="s3cret-s3cret-s3")
    plain = _variable("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="60")
    payload = json.dumps({"setVariableData": [plain, secret]}).encode()
    redacted = json.loads(redact_payload("SetVariables", payload, KEYS) or b"")
    assert [d["attributeValue"] for d in redacted["setVariableData"]] == ["60", "***"]
    answer = {"getVariableResult": [{**secret, "attributeStatus": "Accepted"}]}
    got = redact_payload("GetVariables", json.dumps(answer).encode(), KEYS)
    assert json.loads(got or b"")["getVariableResult"][0]["attributeValue"] == "***"
    report = {
        "requestId": 1,
        "generatedAt": "2027-01-01T00:00:00Z",
        "seqNo": 0,
        "reportData": [
            {
                **_variable("SecurityCtrlr", "BasicAuthPassword"),
                "variableAttribute": [{"value": "s3cret-s3cret-s3"}, {"type": "Target"}],
            }
        ],
    }
    got = redact_payload("NotifyReport", json.dumps(report).encode(), KEYS)
    assert json.loads(got or b"")["reportData"][0]["variableAttribute"] == [
        {"value": "***"},
        {"type": "Target"},
    ]
    assert (
        redact_payload("SetVariables", json.dumps({"setVariableData": [plain]}).encode(), KEYS)
        is None
    )
    # Configured keys name 2.x variables as Component.Variable.
    keys = parse_secret_keys("OCPPCommCtrlr.HeartbeatInterval")
    assert b"***" in (redact_payload("SetVariables", payload, keys) or b"")


def test_set_network_profile_passwords_and_vpn_key_are_always_redacted() -> None:
    payload = {
        "configurationSlot": 1,
        "connectionData": {
            "ocppInterface": "Wireless0",
            "ocppTransport": "JSON",
            "messageTimeout": 30,
            "ocppCsmsUrl": "wss://csms.example.com/ocpp",
            "securityProfile": 2,
            "basicAuthPassword": "s3cret-basic-pass",
            "apn": {"apn": "internet", "apnAuthentication": "CHAP", "apnPassword": "apn-pass"},
            "vpn": {
                "server": "vpn",
                "user": "u",
                "password": "vpn-pass",
                "key": "psk",
                "type": "IPSec",
            },
        },
    }
    redacted = json.loads(
        redact_payload("SetNetworkProfile", json.dumps(payload).encode(), KEYS) or b""
    )
    data = redacted["connectionData"]
    assert data["basicAuthPassword"] == data["apn"]["apnPassword"] == "***"
    assert data["vpn"]["password"] == data["vpn"]["key"] == "***"
    assert (
        data["vpn"]["user"] == "u"
        and data["ocppCsmsUrl"] == payload["connectionData"]["ocppCsmsUrl"]
    )
    assert (
        json.loads(redact_text(json.dumps([2, "x", "SetNetworkProfile", payload]), KEYS) or "")[3][
            "connectionData"
        ]["vpn"]["key"]
        == "***"
    )
