"""The UI's server functions over HTTP, as a browser (or anyone) reaches them: every one
checks who is asking. No Chromium needed."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr

from tests.support.peer import Peer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Ui:
    def __init__(self, client: httpx.AsyncClient, config: dict) -> None:
        self.client = client
        self.ids: dict[str, int] = {}
        for comp in config["components"]:
            kind = (comp.get("props", {}).get("props") or {}).get("wt_kind")
            if comp.get("props", {}).get("server_fns") and kind:
                self.ids.setdefault(kind, comp["id"])

    async def __call__(self, kind: str, fn: str, **data) -> dict:
        body = {"data": data, "component_id": self.ids[kind], "fn_name": fn, "session_hash": "test"}
        res = await self.client.post("gradio_api/component_server/", json=body)
        res.raise_for_status()
        return res.json()


@pytest.fixture
async def ui(app_factory):
    app = await app_factory(agent_passcode=SecretStr("s3cret"))
    async with httpx.AsyncClient(base_url=app.url, timeout=20) as client:
        config = (await client.get("config")).json()
        yield Ui(client, config)


async def test_every_function_checks_who_is_asking(ui):
    assert set(ui.ids) == {"desk", "caller", "calls", "page"}
    expired = {"error": "please sign in again", "kind": "SessionExpired"}  # the desk decides on the kind
    assert await ui("desk", "agent_state") == expired
    # The page's boot panel (outside the tabs) carries both sets; each still checks who is asking.
    assert await ui("page", "agent_state") == expired
    assert "not yours" in (await ui("page", "caller_status"))["error"]
    assert "wrong" in (await ui("desk", "agent_sign_in", identity="agent-a", passcode="nope"))["error"]
    refused = await ui("desk", "agent_sign_in", identity="caller-x", passcode="s3cret")
    assert refused["kind"] == "InvalidInput" and "agent id" in refused["error"]
    a = await ui("desk", "agent_sign_in", identity="agent-a", name="Alice", passcode="s3cret")
    b = await ui("desk", "agent_sign_in", identity="agent-b", name="Bob", passcode="s3cret")
    assert a["lobby"]["room"] == "agents-lobby" and "session" in b
    await ui("desk", "agent_available", session=a["session"], available=True)
    # Available takes a live connection too: Alice's desk joins the lobby with the token it got.
    assert await ui("caller", "caller_agents") == {"agents": []}
    lobby = await Peer("agent-a").connect(a["lobby"]["url"], a["lobby"]["token"])
    try:
        alice = [{"identity": "agent-a", "name": "Alice"}]
        await _until(lambda: ui("caller", "caller_agents"), lambda r: r["agents"] == alice)
        await _calls_and_rooms(ui, a, b)
    finally:
        await lobby.disconnect()


async def _until(call, ok, timeout: float = 10.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while not ok(result := await call()):
        assert asyncio.get_running_loop().time() < deadline, result
        await asyncio.sleep(0.1)
    return result


async def _calls_and_rooms(ui, a: dict, b: dict) -> None:

    assert "longer than 80" in (await ui("caller", "caller_start", name="x" * 81))["error"]
    assert "not available" in (await ui("caller", "caller_start", name="Bo", agent="agent-b"))["error"]
    one = await ui("caller", "caller_start", name="Maria")  # first available: Alice
    two = await ui("caller", "caller_start", name="Ned")
    assert one["ringing"] == "agent-a" and one["ringing_name"] == "Alice"
    assert "summary" not in one and one["token"]["room"] == f"call-{one['call_id']}"

    # A caller's ticket opens its own call only.
    mine = {"call_id": one["call_id"], "identity": one["identity"], "ticket": one["ticket"]}
    assert (await ui("caller", "caller_status", **mine))["status"] == "waiting"
    crossed = {**mine, "call_id": two["call_id"]}
    assert "not valid" in (await ui("caller", "caller_status", **crossed))["error"]
    assert "not valid" in (await ui("caller", "caller_hangup", **{**mine, "ticket": two["ticket"]}))["error"]
    assert "not yours" in (await ui("caller", "caller_token"))["error"]
    # Agent functions are not on the caller's component, and need a session anyway.
    with pytest.raises(httpx.HTTPStatusError):
        await ui("caller", "agent_state", session=a["session"])

    # Agents only take calls offered to them, and only reach rooms they are on.
    taken = await ui("desk", "agent_accept_call", session=b["session"], call_id=one["call_id"])
    assert "this call is ringing Alice, not you" in taken["error"]
    accepted = await ui("desk", "agent_accept_call", session=a["session"], call_id=one["call_id"])
    assert accepted["call"]["agent_identity"] == "agent-a" and accepted["token"]["room"] == one["token"]["room"]
    assert (
        "not on call"
        in (await ui("desk", "agent_room_token", session=b["session"], room=one["token"]["room"]))["error"]
    )
    assert (
        "not on this call"
        in (await ui("desk", "agent_end_call", session=b["session"], call_id=one["call_id"]))["error"]
    )
    board = await ui("calls", "dashboard", session=b["session"])
    assert {c["caller_name"] for c in board["calls"]} == {"Maria", "Ned"}
    assert (await ui("calls", "dashboard"))["error"] == "please sign in again"

    ended = await ui("caller", "caller_hangup", **mine)
    assert ended["status"] == "ended"
    assert "has ended" in (await ui("caller", "caller_token", **mine))["error"]


async def test_the_calls_board_says_which_backend_runs_the_functions(app_factory):
    # FUNCTIONS_BACKEND=modal with no Modal credentials: nothing is called at startup, and the
    # board tells agents the functions run on Modal with the local fallback behind it.
    app = await app_factory(functions_backend="modal")
    async with httpx.AsyncClient(base_url=app.url, timeout=20) as client:
        ui = Ui(client, (await client.get("config")).json())
        a = await ui("desk", "agent_sign_in", identity="agent-a", name="Alice")
        board = await ui("calls", "dashboard", session=a["session"])
    assert board["functions_backend"] == "Modal · app warm-transfer (falls back to local)"
    assert board["functions"] == []  # no function has run yet: nothing to say where
    assert board["live_transcription"] is False
