"""Names people type reach the store and the other side's screen normalised, at both edges:
the HTTP API (`caller_name`, an agent token's `name`) and the UI's server functions (the
caller's name, an agent's name at sign-in). The rules themselves: tests/unit/test_names.py.

Peers: the real app (ASGI, in process) on the session's real livekit-server; the UI backend
is called directly, as Gradio's server functions would."""

from __future__ import annotations

import jwt
import pytest

from tests.api.conftest import PASSCODE, agent_headers
from ui.backend import UiBackend

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
RLO, ZWSP, BOM = "\u202e", "\u200b", "\ufeff"


async def test_api_stores_normalised_caller_names(client, ctx):
    r = await client.post("/api/rooms/create", json={"caller_name": f"{BOM}Ann{RLO}gpj.exe  Lo{ZWSP}pez"})
    assert r.status_code == 201, r.text
    assert r.json()["call"]["caller_name"] == "Anngpj.exe Lopez"
    assert ctx.store.get_call(r.json()["call"]["call_id"]).caller_name == "Anngpj.exe Lopez"
    r = await client.post("/api/rooms/create", json={"caller_name": "Jose\u0301"})
    assert r.json()["call"]["caller_name"] == "José"
    r = await client.post("/api/rooms/create", json={"caller_name": "   "})
    assert r.status_code == 201 and r.json()["call"]["caller_name"] == ""  # blank: no name


async def test_api_refuses_a_name_with_nothing_visible(client, ctx):
    before = len(ctx.store.list_calls(include_ended=True))
    r = await client.post("/api/rooms/create", json={"caller_name": f"{RLO}{ZWSP}{BOM}"})
    assert r.status_code == 422 and "no visible characters" in r.json()["detail"]
    assert len(ctx.store.list_calls(include_ended=True)) == before


async def test_agent_token_name_is_normalised(client):
    r = await client.post(
        "/api/tokens",
        json={"role": "agent", "room": "agents-lobby", "name": f"Bo{ZWSP}b{RLO}"},
        headers=agent_headers("agent-a"),
    )
    assert r.status_code == 200, r.text
    claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
    assert claims["name"] == "Bob"


async def test_ui_backend_normalises_typed_names(client, ctx):
    ui = UiBackend(ctx)
    signed = await ui.agent_sign_in({"identity": "agent-n", "name": f"{BOM}Nina{ZWSP} ", "passcode": PASSCODE})
    assert signed.get("name") == "Nina", signed
    started = await ui.caller_start({"name": f"Ma{ZWSP}ria{RLO}"})
    assert "error" not in started, started
    assert ctx.store.get_call(started["call_id"]).caller_name == "Maria"
    refused = await ui.caller_start({"name": f"{ZWSP}{RLO}"})
    assert "no visible characters" in refused["error"]
