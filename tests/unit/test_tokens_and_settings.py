"""Token grants per role (decoded and checked claim by claim) and settings validation."""

from __future__ import annotations

import jwt
import pytest

from functions.errors import ConfigError
from functions.models import Role, TokenRequest
from functions.settings import load_settings
from functions.tokens import mint_token

pytestmark = pytest.mark.unit
SECRET = "s" * 40


@pytest.fixture
def settings():
    return load_settings(
        livekit_url="ws://127.0.0.1:1", livekit_api_key="APIkey", livekit_api_secret=SECRET, token_ttl_s=120
    )


def _claims(settings, **req) -> dict:
    tok = mint_token(TokenRequest(**req), settings)
    claims = jwt.decode(tok.token, SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert claims["exp"] - claims["nbf"] <= settings.token_ttl_s
    return claims


def test_caller_token_is_one_room_mic_only_no_data(settings):
    c = _claims(settings, identity="caller-1", role=Role.caller, room="call-1")
    v = c["video"]
    assert c["sub"] == "caller-1" and c["iss"] == "APIkey"
    assert v["room"] == "call-1" and v["roomJoin"] is True
    assert v["canPublishSources"] == ["microphone"] and v["canPublishData"] is False
    for admin in ("roomAdmin", "roomCreate", "roomList", "roomRecord", "hidden"):
        assert not v.get(admin)
    assert c["attributes"] == {"role": "caller"}


def test_agent_lobby_token_is_receive_only(settings):
    v = _claims(settings, identity="agent-a", role=Role.agent, room="agents-lobby", can_publish=False)["video"]
    assert v["canPublish"] is False and v["canPublishData"] is False and v["canSubscribe"] is True


def test_agent_call_token_publishes_mic_and_data(settings):
    v = _claims(settings, identity="agent-a", role=Role.agent, room="call-1")["video"]
    assert v["canPublish"] is True and v["canPublishData"] is True and v["canPublishSources"] == ["microphone"]
    assert not v.get("roomAdmin")


def test_held_agent_token_neither_publishes_nor_subscribes(settings):
    """What A gets for its call room during the hold (a reload): in the room, silent and deaf."""
    req = {"identity": "agent-a", "role": Role.agent, "room": "call-1"}
    v = _claims(settings, **req, can_publish=False, can_subscribe=False)["video"]
    assert v["roomJoin"] is True and v["canPublish"] is False and v["canSubscribe"] is False
    assert v["canPublishData"] is False


def test_service_token_may_be_hidden(settings):
    v = _claims(settings, identity="transcriber-1", role=Role.service, room="call-1", hidden=True)["video"]
    assert v["hidden"] is True


def test_ttl_is_capped_by_settings(settings):
    c = _claims(settings, identity="caller-1", role=Role.caller, room="call-1", ttl_s=3600)
    assert c["exp"] - c["nbf"] == 120


@pytest.mark.parametrize(
    ("field", "value"),
    [("identity", "bad identity!"), ("identity", ""), ("room", "Call 1"), ("room", "x" * 65), ("role", "admin")],
)
def test_bad_token_requests_are_refused(field, value):
    req = {"identity": "caller-1", "role": "caller", "room": "call-1", field: value}
    with pytest.raises(ValueError):
        TokenRequest(**req)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"livekit_url": "wss://lk.example"}, "LIVEKIT_API_KEY"),
        ({"livekit_url": "ftp://x", "livekit_api_key": "k", "livekit_api_secret": "s"}, "LIVEKIT_URL"),
        ({"token_ttl_s": 5}, "TOKEN_TTL_S"),
        ({"twilio_account_sid": "AC1"}, "TWILIO_AUTH_TOKEN"),
        ({"openai_base_url": "localhost:8000"}, "OPENAI_BASE_URL"),
        ({"functions_backend": "lambda"}, "FUNCTIONS_BACKEND"),
        ({"agents": "agent-a"}, "AGENTS entry 1"),  # no secret
        ({"agents": "agent-a:longenough1,caller-x:longenough2"}, "AGENTS entry 2"),  # a caller's identity
        ({"agents": "agent-a:short"}, "AGENTS entry 1.*shorter than 8"),
        ({"agents": "agent-a:sha256:abc"}, "AGENTS entry 1.*64 hex"),
        ({"agents": "agent-a:longenough1,agent-a:longenough2"}, "AGENTS names 'agent-a' twice"),
        ({"agent_skills": "agent-b"}, "AGENT_SKILLS entry 1"),
        ({"agent_skills": "agent-b:billing,caller-x:billing"}, "AGENT_SKILLS entry 2"),
        ({"agent_skills": "agent-b:Bill ing"}, "AGENT_SKILLS entry 1: 'bill ing' is not a queue name"),
        ({"announce_hold_queue": "Hold for {team}."}, r"ANNOUNCE_HOLD_QUEUE: unknown field \{team\}"),
        ({"announce_back": "Back with {agent.name}"}, "ANNOUNCE_BACK: unknown field"),
        ({"announce_hold": "Hold {"}, "ANNOUNCE_HOLD"),
        ({"offer_timeout_s": 0}, "OFFER_TIMEOUT_S"),
    ],
)
def test_settings_errors_name_the_variable(overrides, names):
    with pytest.raises(ConfigError, match=names):
        load_settings(**overrides)


def test_skills_and_announcements_parse():
    s = load_settings(agent_skills="agent-b:Billing|returns, agent-c:billing ,agent-b:vip", announce_back="")
    assert s.skills() == {"agent-b": frozenset({"billing", "returns", "vip"}), "agent-c": frozenset({"billing"})}
    assert s.announce_back == ""  # empty: not said


def test_settings_read_from_environment(monkeypatch):
    monkeypatch.setenv("RING_TIMEOUT_S", "7.5")
    monkeypatch.setenv("TTS_PROVIDER", "espeak")
    s = load_settings()
    assert s.ring_timeout_s == 7.5 and s.tts_provider == "espeak"


def test_minting_without_keys_is_a_clear_error():
    with pytest.raises(ConfigError, match="LIVEKIT_API_KEY"):
        mint_token(TokenRequest(identity="a", role=Role.agent, room="call-1"), load_settings())


def test_agents_are_kept_as_hashes_of_their_secrets():
    import hashlib

    digest = hashlib.sha256(b"beta-secret").hexdigest()
    s = load_settings(agents=f" agent-a:alpha-secret , agent-b:sha256:{digest.upper()} ")
    assert s.agent_credentials() == {"agent-a": hashlib.sha256(b"alpha-secret").hexdigest(), "agent-b": digest}
