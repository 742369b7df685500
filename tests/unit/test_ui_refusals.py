"""The UI's server functions refuse with a `kind` the browser decides on (ui/backend.py): an unknown
or ended agent session is `SessionExpired`, other refusals keep their own kind, and the desk's
script compares with that same name. No peer: the refusals happen before the app context is used."""

import pytest

from functions.errors import SessionExpired
from ui.backend import UiBackend
from ui.widgets import STATIC_DIR

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("session", [None, "", "not-a-session", 42])
@pytest.mark.parametrize("function", ["agent_state", "agent_room_token", "agent_available", "dashboard"])
async def test_a_missing_or_unknown_session_is_session_expired(function, session):
    ui = UiBackend(ctx=None)
    answer = await getattr(ui, function)({"session": session, "room": "agents-lobby", "available": True})
    assert answer == {"error": "please sign in again", "kind": "SessionExpired"}


async def test_other_refusals_keep_their_own_kind():
    answer = await UiBackend(ctx=None).agent_sign_in({"identity": "caller-x", "passcode": ""})
    assert answer["kind"] == "InvalidInput"
    assert (await UiBackend(ctx=None).agent_state("not an object"))["kind"] == "SessionExpired"


def test_the_desk_decides_on_the_same_kind():
    assert f'answer.kind === "{SessionExpired.__name__}"' in (STATIC_DIR / "desk_logic.js").read_text()
