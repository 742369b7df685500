"""One identity per agent (issue 17, part 1): with AGENTS set, an agent's secret names exactly one
identity. Claiming another agent's identity with your own secret is refused and changes nothing;
the shared API key stops working; a second sign-in of the same agent in the UI is refused unless
the agent explicitly replaces the first session, which then ends.

Peers: the real app (`create_app`, lifespan run) against the session's livekit-server and worker.
"""

from __future__ import annotations

import hashlib

import pytest
from pydantic import SecretStr

from tests.api.conftest import API_KEY, agent_headers, make_online, with_auth
from tests.api.test_api_auth import snapshot
from ui.backend import UiBackend

pytestmark = pytest.mark.integration

A_SECRET, B_SECRET = "alpha-secret-1", "beta-secret-22"
# One plain secret, one given as its sha256 (so a settings file need not hold B's secret).
AGENTS = f"agent-a:{A_SECRET},agent-b:sha256:{hashlib.sha256(B_SECRET.encode()).hexdigest()}"


@pytest.fixture
def api_settings(control_settings):
    """The API tier's app (tests/api/conftest.py), with per-agent secrets instead of one shared key."""
    return with_auth(control_settings, agents=SecretStr(AGENTS), live_transcription=False)


@pytest.fixture
def app(api_app):
    return api_app


async def test_an_agent_acts_only_as_itself(client, app):
    ctx = app.state.ctx
    assert ctx.auth.mode == "per-agent"
    r = await client.post(
        "/api/rooms/create",
        json={"caller_name": "Ann", "agent_identity": "agent-a"},
        headers=agent_headers("agent-a", key=A_SECRET),
    )
    assert r.status_code == 201, r.text
    call = r.json()["call"]
    b_lobby = await make_online(client, ctx, "agent-b", key=B_SECRET)  # B, with its own secret
    r = await client.post(
        "/api/transfer/initiate",
        json={"call_id": call["call_id"], "target": "agent-b"},
        headers=agent_headers("agent-a", key=A_SECRET),
    )
    await b_lobby.disconnect()
    assert r.status_code == 201, r.text
    tid = r.json()["transfer_id"]
    before = snapshot(ctx)
    impersonations = [
        # B's transfer, accepted by A with A's own secret but claiming to be B
        ("POST", "/api/transfer/complete", {"transfer_id": tid}, agent_headers("agent-b", key=A_SECRET)),
        ("POST", "/api/transfer/decline", {"transfer_id": tid}, agent_headers("agent-b", key=A_SECRET)),
        # B's token for the consult, and the lobby as B (where B's transfer summaries arrive)
        ("POST", "/api/tokens", {"role": "agent", "room": f"consult-{tid}"}, agent_headers("agent-b", key=A_SECRET)),
        ("POST", "/api/tokens", {"role": "agent", "room": "agents-lobby"}, agent_headers("agent-b", key=A_SECRET)),
        # A's transfer, cancelled by B claiming to be A
        ("POST", "/api/transfer/cancel", {"transfer_id": tid}, agent_headers("agent-a", key=B_SECRET)),
        # an identity AGENTS does not name, and the shared API key, which per-agent mode does not take
        ("POST", "/api/tokens", {"role": "agent", "room": "agents-lobby"}, agent_headers("agent-z", key=A_SECRET)),
        ("POST", "/api/transfer/cancel", {"transfer_id": tid}, agent_headers("agent-a", key=API_KEY)),
    ]
    for method, path, body, headers in impersonations:
        r = await client.request(method, path, json=body, headers=headers)
        assert r.status_code == 403, (path, headers["X-Agent-Identity"], r.status_code, r.text)
        assert "own" in r.json()["detail"], r.text
    assert snapshot(ctx) == before, "a refused impersonation changed the store"
    # Each agent with its own secret: B's consult token, then A cancels.
    r = await client.post(
        "/api/tokens", json={"role": "agent", "room": f"consult-{tid}"}, headers=agent_headers("agent-b", key=B_SECRET)
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        "/api/transfer/cancel", json={"transfer_id": tid}, headers=agent_headers("agent-a", key=A_SECRET)
    )
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text


async def test_ui_sign_in_is_bound_to_the_secret_and_never_silently_replaces_a_session(client, app):
    ui = UiBackend(app.state.ctx)
    wrong = await ui.agent_sign_in({"identity": "agent-b", "name": "Bob", "passcode": A_SECRET})
    assert "own" in wrong["error"]
    first = await ui.agent_sign_in({"identity": "agent-b", "name": "Bob", "passcode": B_SECRET})
    assert first.get("session"), first
    second = await ui.agent_sign_in({"identity": "agent-b", "name": "Bob", "passcode": B_SECRET})
    assert second.get("kind") == "Conflict" and "already signed in" in second["error"], second
    assert "error" not in await ui.agent_state({"session": first["session"]}), "the refused sign-in ended the first"
    replaced = await ui.agent_sign_in({"identity": "agent-b", "name": "Bob", "passcode": B_SECRET, "replace": True})
    assert replaced.get("session") and replaced["session"] != first["session"]
    assert "sign in again" in (await ui.agent_state({"session": first["session"]}))["error"]
    assert "error" not in await ui.agent_state({"session": replaced["session"]})
