"""Abrupt disconnects of the caller, A and B at each stage of a transfer: the peer's process is killed
(SIGKILL: no leave message, no WebRTC goodbye), as a crashed browser or a phone that lost power.

LiveKit only notices a peer that vanished when its ICE connection fails: measured 20.9 s on
livekit-server 1.13.5 (its timeouts, not ours: 10 s "disconnected", 5 s more to "failed", then the
participant is closed). Until then the peer's participant is a ghost the server still lists. The
control plane acts on LiveKit's `participant_left` (a caller gets CALLER_GRACE_S to come back), so the
cases that need LiveKit to notice run at once, on calls of their own, and are bounded by that.

Each case asserts the end state in the store, in LiveKit and in what the remaining peers hear and
were told. Nothing is left half-open: no call `active` with nobody in it, no transfer stuck open.

Peers: the real app (ASGI, in process) on the session's livekit-server and media worker; the peers
to be killed run in processes of their own (tests/support/peer_process.py), the others in this one.
"""

from __future__ import annotations

import asyncio
import time

from functions.models import CallStatus, TransferState
from tests.faults.conftest import A_HZ, B_HZ, Scene, wait_for

S = TransferState
LIVEKIT_NOTICES_S = 21.0  # measured: a killed peer leaves LiveKit's room ~20.9 s after it died
SLACK_S = 10.0  # webhook, grace, clean-up, and a busy 2-core machine


async def test_caller_or_b_vanishing_at_each_stage_ends_cleanly(app, client, fault_settings):
    """Five calls at once, one peer killed in each; LiveKit notices them together."""
    talking, consulting, accepted, accepted_b_joined, b_in_consult = (
        Scene(app, client, a=f"agent-a{i}", b=f"agent-b{i}") for i in range(5)
    )
    scenes = [talking, consulting, accepted, accepted_b_joined, b_in_consult]
    try:
        # One after the other: twenty peers connecting at once would measure this machine, not the product.
        for s in scenes[:4]:
            await s.start(killable=frozenset({"caller"}))
        await b_in_consult.start()
        for s in scenes[1:]:
            assert (await s.initiate()).status_code == 201
        for s in scenes[1:4]:
            await s.join_consult()
        await b_in_consult.join_consult(killable=frozenset({"b"}))
        for s in (accepted, accepted_b_joined):
            assert (await s.accept()).status_code == 200
        token = await accepted_b_joined.agent_token(accepted_b_joined.b_id, accepted_b_joined.room)

        killed = time.monotonic()
        for s in scenes[:4]:
            s.caller_proc.kill()
        b_in_consult.b_consult_proc.kill()
        # B takes the call it accepted; the caller's ghost is still listed there, its audio gone.
        await accepted_b_joined.b_joins_call(token)
        await accepted_b_joined.wait_transfer(S.completed)
        bound = LIVEKIT_NOTICES_S + fault_settings.caller_grace_s + SLACK_S

        async def ended(s: Scene, state: TransferState | None) -> float:
            await s.wait_call(CallStatus.ended, timeout=bound)
            took = time.monotonic() - killed
            await s.assert_ended(state)
            return took

        took = await asyncio.gather(
            ended(talking, None),
            ended(consulting, S.caller_left),
            # Accepted, B never came (it saw the caller was gone): the hand-off fails at JOIN_TIMEOUT_S and
            # the call is A's again, until LiveKit says the caller left. The finding: the call then
            # stayed `active` with nobody in it.
            ended(accepted, S.failed),
            ended(accepted_b_joined, S.completed),
        )
        print(f"\n[abrupt] caller killed → call ended after {[round(t, 1) for t in took]} s")
        await b_in_consult.assert_back_with_a(S.target_left)
        t = await b_in_consult.db_transfer()
        assert t["events"][-1]["detail"]["reason"] == "target left the consult"
        print(f"[abrupt] B killed mid-consult → back with A after {time.monotonic() - killed:.1f} s")
    finally:
        await asyncio.gather(*(s.close() for s in scenes))


async def test_the_agent_on_the_call_vanishing_loses_nothing(app, client):
    """A killed while talking, and B killed once the call is B's: the call stays theirs, the caller keeps
    waiting in it, and the agent's page coming back (a fresh token) takes over from the ghost at once."""
    a_lost, b_lost = (Scene(app, client, a=f"agent-a{i}", b=f"agent-b{i}") for i in range(2))
    try:
        await a_lost.start(killable=frozenset({"a"}))
        await b_lost.start()
        assert (await b_lost.initiate()).status_code == 201
        await b_lost.join_consult()
        assert (await b_lost.accept()).status_code == 200
        b_call = await b_lost.process(b_lost.b_id, B_HZ, b_lost.room)
        await b_lost.wait_transfer(S.completed)
        await b_lost.caller.wait_hears_only({b_lost.b_id}, timeout=15)

        a_lost.a_proc.kill()
        b_call.kill()
        await asyncio.sleep(2.0)
        for s, agent in ((a_lost, a_lost.a_id), (b_lost, b_lost.b_id)):
            call = s.db_call()
            assert call.status is CallStatus.active and call.agent_identity == agent
            assert not s.caller.disconnected.is_set()
            back = await s.peer(agent, A_HZ if s is a_lost else B_HZ).connect(s.url, await s.agent_token(agent, s.room))
            await s.caller.wait_hears_only({agent}, timeout=15)
            await back.wait_hears(s.caller_id, timeout=15)
            assert await s.identities(s.room) == {s.caller_id, agent, s.hold_id}
        a_lost.assert_nothing_repaired()
        b_lost.assert_nothing_repaired()
    finally:
        await asyncio.gather(a_lost.close(), b_lost.close())


async def test_a_vanishing_mid_consult_or_after_accept_still_hands_over(app, client):
    """A's whole browser is killed (its call room and consult connections) while B is briefed, or right
    after B accepted: B accepts / joins and the hand-off completes; A's ghosts are removed with it."""
    mid, after = (Scene(app, client, a=f"agent-a{i}", b=f"agent-b{i}") for i in range(2))
    try:
        await asyncio.gather(*(s.start(killable=frozenset({"a"})) for s in (mid, after)))
        for s in (mid, after):
            assert (await s.initiate()).status_code == 201
            await s.join_consult(killable=frozenset({"a"}))
        assert (await after.accept()).status_code == 200
        for s in (mid, after):
            s.a_proc.kill()
            s.a_consult_proc.kill()
        assert (await mid.accept()).status_code == 200
        for s in (mid, after):
            await s.b_joins_call(await s.agent_token(s.b_id, s.room))
            await s.assert_with_b()
            assert s.a_id not in await s.identities(s.room)
    finally:
        await asyncio.gather(mid.close(), after.close())


async def test_b_vanishing_after_accept_gives_the_caller_back_to_a(scene: Scene, fault_settings):
    """B accepted, then its browser died before it reached the caller's room: the hand-off fails after
    JOIN_TIMEOUT_S and the caller is A's again; B's token from accept no longer gets it in."""
    await scene.start()
    assert (await scene.initiate()).status_code == 201
    await scene.join_consult(killable=frozenset({"b"}))
    r = await scene.accept()
    assert r.status_code == 200 and r.json()["join"]
    token = r.json()["join"]["token"]
    scene.b_consult_proc.kill()
    t = await scene.wait_transfer(S.failed, timeout=fault_settings.join_timeout_s + SLACK_S)
    assert "did not reach" in t["events"][-1]["detail"]["reason"]
    await scene.assert_back_with_a(S.failed)
    late = await scene.peer(scene.b_id, B_HZ).connect(scene.url, token, publish=False)
    await wait_for(lambda: late.disconnected.is_set(), 5, "B's late join removed")
    await scene.caller.wait_hears_only({scene.a_id})
