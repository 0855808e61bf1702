"""Settings: every environment variable the core reads, read once, with one rule each."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mqless
from mqless import wiring
from mqless.domain.errors import Unauthorized
from mqless.settings import AccessSettings, Settings, SettingsError
from mqless.transports.websocket.pusher import ApiGatewayPusher

TABLES = {"MESSAGES_TABLE": "messages", "DESTINATIONS_TABLE": "destinations", "KMS_KEY_ID": "k"}


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("AUTH_MODE", "off", "auth_mode", "off"),
        ("AUTH_MODE", "required", "auth_mode", "required"),
        ("JWT_ISSUER", "https://issuer.example", "jwt_issuer", "https://issuer.example"),
        ("JWT_AUDIENCE", "mqless-app", "jwt_audience", "mqless-app"),
        ("JWT_PRINCIPAL_CLAIM", "email", "jwt_principal_claim", "email"),
        ("JWT_GROUPS_CLAIM", "groups", "jwt_groups_claim", "groups"),
        (
            "CONNECTIONS_ENDPOINT",
            "https://ws.example/live",
            "connections_endpoint",
            "https://ws.example/live",
        ),
        ("WEBSOCKET_URL", " wss://ws.example/live\n", "websocket_url", "wss://ws.example/live"),
        ("LOOPBACK_WEBSOCKET_PORT", "9001", "loopback_websocket_port", 9001),
    ],
)
def test_each_variable_is_read_into_its_setting(
    variable: str, value: str, field: str, expected: Any
) -> None:
    # Given a function environment with the variable set
    env = {**TABLES, variable: value}

    # When the settings are read
    settings = Settings.from_env(env)

    # Then the setting holds its value (a URL without the blanks around it)
    assert getattr(settings, field) == expected


def test_unset_variables_take_the_templates_defaults() -> None:
    # Given only the tables and key
    # When the settings are read
    settings = Settings.from_env(TABLES)

    # Then authentication is required, JWTs are off and no WebSocket API is configured
    assert settings.model_dump(exclude={s.lower() for s in TABLES}) == {
        "data_key_max_age_seconds": 300,
        "data_key_max_messages": 10_000,
        "queues_per_principal": 100,
        "durable_subscriptions_per_principal": 100,
        "schedule_lookahead_seconds": 75,
        "auth_mode": "required",
        "jwt_issuer": "",
        "jwt_audience": "",
        "jwt_principal_claim": "sub",
        "jwt_groups_claim": "cognito:groups",
        "connections_endpoint": "",
        "websocket_url": "",
        "loopback_websocket_port": 8081,
    }
    assert settings.auth_required


def test_emptied_jwt_claim_parameters_mean_the_default_claims() -> None:
    # Given the template's claim parameters emptied (it passes them through as they are)
    env = {**TABLES, "JWT_PRINCIPAL_CLAIM": "", "JWT_GROUPS_CLAIM": ""}

    # When the settings are read
    settings = Settings.from_env(env)

    # Then the claims are the defaults, as before Settings read them
    assert (settings.jwt_principal_claim, settings.jwt_groups_claim) == ("sub", "cognito:groups")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {**TABLES, "AUTH_MODE": "OFF "},
            "the function's environment is wrong: AUTH_MODE must be 'required' or 'off', "
            "not 'OFF '",
        ),
        (
            {"MESSAGES_TABLE": "messages", "KMS_KEY_ID": "k"},
            "the function's environment is wrong: DESTINATIONS_TABLE is not set",
        ),
        (
            {**TABLES, "LOOPBACK_WEBSOCKET_PORT": "80800"},
            "the function's environment is wrong: LOOPBACK_WEBSOCKET_PORT: Input should be "
            "less than or equal to 65535 (not '80800')",
        ),
    ],
)
def test_a_wrong_environment_is_refused_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    # Given a function environment with a mistake in it
    # When the settings are read
    # Then they are refused, naming the variable as the template spells it
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert str(refused.value) == message


@pytest.mark.parametrize("section", [Settings, AccessSettings], ids=lambda c: c.__name__)
def test_a_section_reads_its_variables_by_the_same_rule_without_the_rest(
    section: type[AccessSettings],
) -> None:
    # Given a handler that reads only the access settings (no tables in its environment),
    # and one that reads them all
    env = {"AUTH_MODE": "OFF "} if section is AccessSettings else {**TABLES, "AUTH_MODE": "OFF "}

    # When both read a mistyped AUTH_MODE
    # Then both refuse it with the same words
    with pytest.raises(SettingsError) as refused:
        section.from_env(env)
    assert str(refused.value) == (
        "the function's environment is wrong: AUTH_MODE must be 'required' or 'off', not 'OFF '"
    )
    # and the access settings alone need no tables
    assert AccessSettings.from_env({"AUTH_MODE": "off"}).auth_required is False


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name, value in TABLES.items():
        monkeypatch.setenv(name, value)
    for name in ("AUTH_MODE", "CONNECTIONS_ENDPOINT", "JWT_ISSUER", "JWT_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    wiring.reset()
    yield monkeypatch
    wiring.reset()


def test_the_environment_is_read_once_per_process(function_env: pytest.MonkeyPatch) -> None:
    # Given a function that has read its settings, with authentication required
    assert wiring.auth_required()

    # When its environment changes afterwards
    function_env.setenv("AUTH_MODE", "off")

    # Then it keeps what it read, until the runtime is reset (as a new process would)
    assert wiring.auth_required()
    wiring.reset()
    assert not wiring.auth_required()


@pytest.mark.parametrize(("endpoint", "pushes"), [("https://ws.example/live", True), (None, False)])
def test_the_pusher_pushes_only_where_the_settings_name_a_connections_endpoint(
    function_env: pytest.MonkeyPatch, endpoint: str | None, pushes: bool
) -> None:
    # Given a function whose environment names a @connections endpoint, or none
    if endpoint is not None:
        function_env.setenv("CONNECTIONS_ENDPOINT", endpoint)

    # When it builds its pusher
    pusher = wiring.pusher()

    # Then it pushes through API Gateway there; with none, a push is a deployment fault
    assert isinstance(pusher, ApiGatewayPusher) is pushes
    if not pushes:
        with pytest.raises(RuntimeError, match="CONNECTIONS_ENDPOINT is not set"):
            pusher.post("conn-1", b"{}")


@pytest.mark.parametrize(
    ("issuer", "refusal"),
    [
        (None, "no JWT issuer is configured"),
        ("https://issuer.example", "the issuer is configured without an audience"),
    ],
)
def test_jwts_are_taken_only_from_the_issuer_of_the_settings(
    function_env: pytest.MonkeyPatch, issuer: str | None, refusal: str
) -> None:
    # Given a function with no JWT issuer, or an issuer and no audience
    if issuer is not None:
        function_env.setenv("JWT_ISSUER", issuer)

    # When a JWT-shaped token authenticates
    # Then it is refused for that reason (no network: neither case fetches keys)
    with pytest.raises(Unauthorized, match=refusal):
        wiring.authenticator().authenticate("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")


def test_no_module_of_the_core_nor_any_handler_but_settings_and_start_up_reads_the_env() -> None:
    # Given the core's modules and the functions' handlers (but start_up, which asks whether
    # Lambda's runtime runs it before anything, Settings' pydantic included, is loaded: that
    # variable is the runtime's, not a setting of the function)
    core = Path(mqless.__file__).parent
    handlers = core.parent.parent.parent / "functions"
    sources = [*core.rglob("*.py"), *handlers.rglob("*.py")]
    assert len(sources) > len(list(core.rglob("*.py"))), "the handlers are searched too"
    # When their code is searched for environment reads (os.environ, os.getenv)
    readers = sorted(
        str(path.relative_to(core.parent.parent.parent))
        for path in sources
        if path.name not in ("settings.py", "start_up.py")
        and _reads_environment(path.read_text(encoding="utf-8"))
    )
    # Then there are none: every variable is a field of Settings, read once, one rule each
    assert readers == []


def _reads_environment(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ("environ", "getenv") for alias in node.names)
        ):
            return True
    return False
