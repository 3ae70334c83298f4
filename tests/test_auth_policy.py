"""The policy's parts without a server: the key file, clients' rights, the gate, the config
tables, the model names a TF Serving request holds, and ``tfgate hash-key``."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import pytest

from tests.log_secrets import remember
from tfgate import cli
from tfgate.calls import Call, Credentials
from tfgate.config import ConfigError, load
from tfgate.errors import InvalidArgument, PermissionDenied, Unauthenticated
from tfgate.inference import models_named
from tfgate.policy.clients import Rights
from tfgate.policy.config import ClientRights, PolicyConfig, PolicyError, policy_of
from tfgate.policy.gate import Gate
from tfgate.policy.keys import parse_keys
from tfgate.tfs.tensorflow_serving.apis import (
    inference_pb2,
    model_pb2,
    predict_pb2,
)

KEY_A = remember("key-of-alpha-7f3a")
KEY_B = remember("key-of-beta-91c2")
KEY_A2 = remember("second-key-of-alpha")


def hexdigest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


KEYS = f"""
[keys.alpha]
sha256 = ["{hexdigest(KEY_A)}", "{hexdigest(KEY_A2).upper()}"]
[keys.beta]
sha256 = "{hexdigest(KEY_B)}"
"""
CLIENTS = {
    "alpha": ClientRights(("half_*", "iris"), ("Predict", "GetModel", "tfserving")),
    "beta": ClientRights(("echo",), ("Predict",)),
}


def test_keys_file_maps_every_key_to_its_client() -> None:
    table = parse_keys(KEYS, "keys.toml")
    assert len(table) == 3
    assert table.client_of(KEY_A) == "alpha"
    assert table.client_of(KEY_A2) == "alpha"  # upper-case hex is read too
    assert table.client_of(KEY_B) == "beta"
    assert table.client_of("not-a-key") is None
    assert table.client_of(hexdigest(KEY_A)) is None  # the digest is not the key


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[keys.x]\nsha256 = "abc"', "keys.x.sha256[0]: expected 64 hex digits"),
        ("[keys.x]\nsha256 = []", "keys.x.sha256: expected a hex digest"),
        (f'[keys.x]\nsha256 = "{"0" * 64}"\nsalt = "s"', "keys.x: expected exactly one"),
        (f'[other]\nsha256 = "{"0" * 64}"', "other: unknown table"),
        (f'[keys.x]\nsha256 = "{"0" * 64}"\n[keys.y]\nsha256 = "{"0" * 64}"', "a key of x"),
        ("[keys.x\n", "keys file k.toml"),
    ],
)
def test_a_bad_keys_file_is_refused_naming_the_field(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_keys(text, "k.toml")
    assert says in str(refused.value)
    assert "0" * 64 not in str(refused.value)  # a digest is never repeated in the message


def test_rights_match_globs_and_methods() -> None:
    rights = Rights(CLIENTS)
    rights.check("alpha", "Predict", ["half_plus_two", "iris"])
    rights.check("alpha", "tfserving", ["half_plus_three"])
    rights.check("beta", "Predict", ["echo"])
    denied = [
        ("alpha", "Predict", "iris2"),  # a pattern matches the whole name
        ("alpha", "Predict", "Half_plus_two"),  # and is case-sensitive
        ("beta", "GetModel", "echo"),  # a method not granted
        ("beta", "Predict", "half_plus_two"),
        ("gamma", "Predict", "echo"),  # no [clients.gamma]: nothing
    ]
    for client, method, model in denied:
        with pytest.raises(PermissionDenied) as refused:
            rights.check(client, method, [model])
        assert f"{method} on model {model!r}" in refused.value.message
    with pytest.raises(PermissionDenied, match="'echo'"):
        rights.check("alpha", "Predict", ["half_plus_two", "echo"])  # every model must pass


def test_policy_tables_are_validated() -> None:
    policy = policy_of(
        {"enabled": True, "keys_file": "k.toml"},
        {"alpha": {"models": ["half_*"], "methods": ["Predict"]}, "open": {"models": ["*"]}},
    )
    assert policy.enabled and policy.keys_file == "k.toml"
    assert policy.clients["alpha"] == ClientRights(("half_*",), ("Predict",))
    assert policy.clients["open"].methods == ("Predict", "GetModel", "tfserving")
    bad = [
        ({"enabled": "yes"}, {}, "auth.enabled: expected bool"),
        ({"keyfile": "k"}, {}, "auth.keyfile: unknown setting"),
        ({"enabled": True}, {}, "auth.keys_file: required"),
        ({}, {"a": {"models": "half_*"}}, "clients.a.models: expected a list"),
        ({}, {"a": {"models": [""]}}, "clients.a.models: expected a list"),
        ({}, {"a": {"methods": ["Classify"]}}, "clients.a.methods: 'Classify' is not one of"),
        ({}, {"a": {"model": ["x"]}}, "clients.a.model: unknown setting"),
        ({}, {"a": 3}, "clients.a: must be a table"),
    ]
    for auth, clients, says in bad:
        with pytest.raises(PolicyError) as refused:
            policy_of(auth, clients)
        assert says in str(refused.value)


def test_config_file_reads_auth_and_clients(tmp_path: Path) -> None:
    path = tmp_path / "tfgate.toml"
    path.write_text(
        'max_concurrency = 8\n[auth]\nenabled = true\nkeys_file = "/run/keys.toml"\n'
        '[clients.alpha]\nmodels = ["iris"]\n'
    )
    config = load({}, {}, str(path))
    assert config.max_concurrency == 8
    assert config.policy.enabled and config.policy.keys_file == "/run/keys.toml"
    assert config.policy.clients["alpha"].models == ("iris",)
    assert not load({}, {}).policy.enabled  # off by default
    path.write_text('[clients.alpha]\nmethods = ["predict"]\n')
    with pytest.raises(ConfigError, match=f"clients.alpha.methods.*from config file {path}"):
        load({}, {}, str(path))
    path.write_text("policy = 1\n")  # the policy is tables, not a setting
    with pytest.raises(ConfigError, match=r"policy .*unknown setting"):
        load({}, {}, str(path))


def _call(authorization: str = "", api_key: str = "", tls: str | None = None) -> Call:
    return Call(
        "grpc",
        "Predict",
        time.monotonic() + 5,
        credentials=Credentials(authorization, api_key, tls),
    )


def _gate(verifier: object = None, tls_identity: bool = False) -> Gate:
    policy = PolicyConfig(True, "unused", tls_identity, CLIENTS)
    return Gate(policy, parse_keys(KEYS, "keys.toml"), verifier)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_gate_names_the_client_of_a_good_key() -> None:
    gate = _gate()
    for call in (_call(f"Bearer {KEY_A}"), _call(f"bearer  {KEY_A2} "), _call(api_key=KEY_A)):
        await gate.admit(call, "Predict", "half_plus_two")
        assert call.client == "alpha"
    call = _call(f"Bearer {KEY_B}")
    with pytest.raises(PermissionDenied):
        await gate.admit(call, "Predict", "half_plus_two")
    assert call.client == "beta"  # the log says who was refused


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (_call(), "missing"),
        (_call(tls="CN=alpha"), "missing"),  # a certificate counts only with tls_identity
        (_call("Bearer"), "invalid"),
        (_call(f"Basic {KEY_A}"), "invalid"),
        (_call(KEY_A), "invalid"),  # no scheme
        (_call(f"Bearer {KEY_A} extra"), "invalid"),
        (_call("Bearer unknown-key"), "invalid"),
        (_call(api_key="unknown-key"), "invalid"),
        (_call("Bearer unknown-key", api_key=KEY_A), "invalid"),  # Authorization wins
    ],
)
async def test_gate_refuses_bad_credentials(call: Call, reason: str) -> None:
    with pytest.raises(Unauthenticated) as refused:
        await _gate().admit(call, "Predict", "half_plus_two")
    assert refused.value.message == reason
    assert call.client == "-"


class Verifier:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def client_of(self, token: str) -> str:
        self.seen.append(token)
        if token == "a.b.c":
            return "alpha"
        raise Unauthenticated("expired")


@pytest.mark.asyncio
async def test_gate_asks_a_verifier_about_tokens_that_are_not_keys() -> None:
    verifier = Verifier()
    gate = _gate(verifier)
    call = _call("Bearer a.b.c")
    await gate.admit(call, "Predict", "iris")
    assert call.client == "alpha"
    with pytest.raises(Unauthenticated, match="expired"):
        await gate.admit(_call("Bearer x.y.z"), "Predict", "iris")
    with pytest.raises(Unauthenticated, match="invalid"):
        await gate.admit(_call("Bearer not-a-jwt"), "Predict", "iris")  # no dots: keys only
    await gate.admit(_call(f"Bearer {KEY_A}"), "Predict", "iris")  # keys first
    assert verifier.seen == ["a.b.c", "x.y.z"]
    with pytest.raises(Unauthenticated, match="invalid"):
        await _gate().admit(_call("Bearer a.b.c"), "Predict", "iris")  # without one: keys only


@pytest.mark.asyncio
async def test_gate_can_take_the_tls_identity_and_is_open_when_off() -> None:
    call = _call(tls="alpha")
    await _gate(tls_identity=True).admit(call, "GetModel", "iris")
    assert call.client == "alpha"
    off = Gate(PolicyConfig(clients=CLIENTS))
    call = _call()
    await off.admit(call, "GetModel", "anything")
    assert call.client == "-"


def test_unauthenticated_says_only_its_reason() -> None:
    assert [Unauthenticated(r).message for r in Unauthenticated.REASONS] == list(
        Unauthenticated.REASONS
    )
    with pytest.raises(ValueError):
        Unauthenticated("key abc is unknown")


def test_credentials_are_kept_out_of_repr() -> None:
    call = _call(f"Bearer {KEY_A}", KEY_B, "CN=x")
    assert KEY_A not in repr(call) and KEY_B not in repr(call)
    assert "CN=x" in repr(call)


def _spec(name: str) -> bytes:
    return model_pb2.ModelSpec(name=name).SerializeToString()


def test_models_named_reads_every_model_spec() -> None:
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "half_plus_two"
    data = predict.SerializeToString()
    assert models_named("/tensorflow.serving.PredictionService/Predict", data) == ["half_plus_two"]
    # Two ModelSpecs: protobuf merges them and TF Serving sees the last name; both are checked.
    forged = b"\x0a" + bytes([len(_spec("echo"))]) + _spec("echo") + data
    assert predict_pb2.PredictRequest.FromString(forged).model_spec.name == "half_plus_two"
    assert models_named("/x/Predict", forged) == ["echo", "half_plus_two"]
    assert models_named("/x/Predict", b"") == [""]
    multi = inference_pb2.MultiInferenceRequest()
    for name in ("echo", "iris"):
        task = multi.tasks.add()
        task.model_spec.name = name
    path = "/tensorflow.serving.PredictionService/MultiInference"
    assert models_named(path, multi.SerializeToString()) == ["echo", "iris"]
    with pytest.raises(InvalidArgument, match="not a valid message"):
        models_named("/x/Predict", b"\x0a\x05ab")


def test_hash_key_prints_the_digest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY_A + "\n"))
    assert cli.main(["hash-key"]) == 0
    assert capsys.readouterr().out.strip() == hexdigest(KEY_A)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli.main(["hash-key"]) == 2
    assert "no key" in capsys.readouterr().err
