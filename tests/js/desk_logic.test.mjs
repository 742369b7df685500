// Unit tests of the desks' and the caller page's decisions (ui/static/desk_logic.js), with node's
// own runner: `node --test tests/js/` (scripts/lint_js.sh, the JS step of `make test`). No peer:
// the functions are pure (snapshots in the shape ui/backend.py's agent_state and caller_status answer).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as L from "../../ui/static/desk_logic.js";

const AGENTS = [
  { identity: "agent-a", name: "Ada" },
  { identity: "agent-b", name: "Bea" },
];
const A = { identity: "agent-a" };
const B = { identity: "agent-b" };
const transfer = (state, extra) => ({
  transfer_id: "t1",
  call_id: "c1",
  call_room: "call-c1",
  consult_room: "consult-t1",
  from_agent: "agent-a",
  target: "agent-b",
  target_kind: "agent",
  state,
  ...extra,
});

test("state labels: known states are spelled for people, unknown ones shown as they are", () => {
  assert.equal(L.stateLabel("timed_out"), "Timed out");
  assert.equal(L.stateLabel("caller_left"), "Caller hung up");
  assert.equal(L.stateLabel("something_new"), "something_new");
  assert.deepEqual([...L.OPEN].sort(), ["completing", "consulting", "idle", "introducing"]);
});

test("the current call: the desk's own, else the one an open incoming transfer is about", () => {
  assert.equal(L.currentCallId({ call: { call_id: "c9" }, transfer_in: transfer("consulting") }), "c9");
  assert.equal(L.currentCallId({ transfer_in: transfer("consulting") }), "c1");
  assert.equal(L.currentCallId({ transfer_in: transfer("declined") }), null);
  assert.equal(L.currentCallId(null), null);
  assert.equal(L.isMyCall({ transfer_in: transfer("completed") }, "c1"), true);
  assert.equal(L.isMyCall({ call: { call_id: "c2" } }, "c1"), false);
  assert.equal(L.isMyCall({ call: { call_id: "c2" } }, ""), false);
});

test("syncCall joins the desk's own call room, once per status", () => {
  const active = L.callToJoin({ call: { call_id: "c1", room: "call-c1", status: "active" } });
  const held = L.callToJoin({ call: { call_id: "c1", room: "call-c1", status: "on_hold" } });
  assert.deepEqual(active, { room: "call-c1", key: "call-c1:active" });
  assert.deepEqual(held, { room: "call-c1", key: "call-c1:on_hold" });
  assert.equal(L.callToJoin({}), null);
});

test("syncCall brings B into the caller's room only while A hands over to B", () => {
  assert.equal(L.callToJoin({ transfer_in: transfer("consulting") }), null);
  assert.deepEqual(L.callToJoin({ transfer_in: transfer("completing") }), { room: "call-c1", key: "call-c1:completing" });
  assert.deepEqual(L.callToJoin({ transfer_in: transfer("introducing") }), { room: "call-c1", key: "call-c1:introducing" });
  assert.equal(L.callToJoin({ transfer_in: transfer("declined") }), null);
  assert.equal(L.callToJoin({ transfer_in: transfer("completing", { target_kind: "phone" }) }), null);
});

test("the consult room: a transfer to an agent while it is consulting, from either side", () => {
  const out = transfer("consulting");
  assert.equal(L.consultToJoin({ transfer_out: out }), out);
  assert.equal(L.consultToJoin({ transfer_in: out }), out);
  assert.equal(L.consultToJoin({ transfer_out: transfer("completing") }), null);
  assert.equal(L.consultToJoin({ transfer_out: transfer("consulting", { target_kind: "phone" }) }), null);
});

test("a declined transfer: A is told it is back with the caller, B leaves the caller's room", () => {
  const t = transfer("declined", { reason: "Not my area" });
  assert.deepEqual(L.transferUpdate(t, A, AGENTS, {}), {
    busy: "",
    notice: "Transfer declined (Not my area): you're back with the caller.",
    leaveCall: false,
  });
  assert.deepEqual(L.transferUpdate(t, B, AGENTS, {}), { busy: "", notice: "Transfer declined (Not my area).", leaveCall: true });
  assert.equal(L.transferUpdate(transfer("timed_out"), A, AGENTS, {}).notice, "Transfer timed out: you're back with the caller.");
});

test("each side reads the other's display name; a phone target is its number", () => {
  assert.equal(L.transferUpdate(transfer("consulting"), A, AGENTS, {}).notice, "Consulting Bea: they're hearing the brief.");
  assert.equal(
    L.transferUpdate(transfer("consulting"), B, AGENTS, {}).notice,
    "Warm transfer from Ada: listen to the brief, then accept or decline.",
  );
  const phone = transfer("consulting", { target: "+14155550123", target_kind: "phone" });
  assert.equal(L.transferUpdate(phone, A, AGENTS, {}).notice, "Consulting +14155550123: they're hearing the brief.");
  assert.equal(L.transferUpdate(transfer("consulting"), B, [], {}).notice.includes("from agent-a"), true);
});

test("completing only changes the progress line; completed and caller_left end it without leaving a room", () => {
  assert.deepEqual(L.transferUpdate(transfer("completing"), A, AGENTS, {}), { busy: "Handing the caller to Bea…" });
  assert.deepEqual(L.transferUpdate(transfer("completing"), B, AGENTS, {}), { busy: "Joining the caller…" });
  assert.deepEqual(L.transferUpdate(transfer("completed"), B, AGENTS, {}), {
    busy: "",
    notice: "Transfer completed: you're now with the caller.",
  });
  const left = L.transferUpdate(transfer("caller_left"), B, AGENTS, {});
  assert.equal(left.notice, "The caller hung up: the transfer from Ada is off.");
  assert.equal(left.leaveCall, undefined);
  assert.deepEqual(L.transferUpdate(transfer("idle"), A, AGENTS, {}), {});
  // A desk that does not know who it is yet (a resumed session) reads the transfer as the target's.
  assert.equal(L.transferUpdate(transfer("completed"), null, AGENTS, {}).notice, "Transfer completed: you're now with the caller.");
});

test("an introduction says whether everyone is together yet (the introduced event)", () => {
  const t = transfer("introducing");
  assert.equal(L.transferUpdate(t, A, AGENTS, {}).notice, "Introducing Bea: they're joining you and the caller…");
  const together = { 3: { seq: 3, detail: { event: "introduced" } } };
  assert.equal(L.transferUpdate(t, A, AGENTS, together).notice, "You, the caller and Bea are talking. Leave when you're done.");
  assert.equal(L.transferUpdate(t, B, AGENTS, together).notice, "You're with the caller and Ada; they'll leave shortly.");
});

test("what A is told the caller and the target hear", () => {
  assert.match(
    L.transferSays(transfer("consulting", { queue: "billing" })),
    /^The caller hears hold music and that a colleague from billing/,
  );
  assert.match(L.transferSays(transfer("consulting", { target: "+1415", target_kind: "phone" })), /\+1415 hears the brief, then presses 1/);
  assert.equal(L.transferSays(transfer("completing", { target_kind: "phone" })), "Handing over: the phone is joining the caller.");
  assert.equal(L.transferSays(transfer("introducing")), "Introducing: the target is joining you and the caller.");
  assert.match(L.transferSays(transfer("introducing", { introduced: true })), /^You, the caller and the target are talking/);
});

test("the phone leg: Twilio's status as A reads it, a machine answer is voicemail", () => {
  assert.equal(L.legText(null), "");
  assert.equal(L.legText({ status: "in-progress" }), "Answered: hearing the brief");
  assert.equal(L.legText({ status: "no-answer" }), "No answer");
  assert.equal(L.legText({ status: "in-progress", answered_by: "machine_start" }), "Voicemail");
  assert.equal(L.legText({ status: "paused" }), "paused");
});

test("caption lag: said only past 3 s behind, or when speech was dropped", () => {
  assert.equal(L.lagText(null), "");
  assert.equal(L.lagText({ behind_s: 2.9, dropped: 0, dropped_s: 0 }), "");
  assert.equal(L.lagText({ behind_s: 4.6, dropped: 0 }), "Captions are 5 s behind: the media worker is busy.");
  assert.equal(L.lagText({ behind_s: 0, dropped: 2, dropped_s: 7.4 }), "7 s of speech (2 utterances) were not transcribed.");
});

test("the timeline: the shown call's own events and its transfer's, in time order", () => {
  const log = [
    { call_id: "c1", at: 10, text: "Answered Maria" },
    { call_id: "c0", at: 5, text: "an earlier call" },
  ];
  const events = {
    1: { seq: 1, at: 20, actor: "agent-a", to_state: "consulting", detail: { target: "agent-b" } },
    2: { seq: 2, at: 30, actor: "agent-b", to_state: "consulting", detail: { event: "offer_declined", agent: "agent-b", reason: "Busy" } },
    3: { seq: 3, at: 15, actor: "agent-a", to_state: "cancelled", detail: { reason: "caller asked" } },
  };
  const items = L.timelineItems(log, "c1", transfer("consulting"), events);
  assert.deepEqual(
    items.map((i) => [i.at, i.kind, i.text]),
    [
      [10, "call", "Answered Maria"],
      [15, "cancelled", "Cancelled · by agent-a — caller asked"],
      [20, "consulting", "Consulting · by agent-a — to agent-b"],
      [30, "offer_declined", "Declined by agent-b — Busy · by agent-b"],
    ],
  );
  // A transfer about another call adds nothing.
  assert.deepEqual(
    L.timelineItems(log, "c1", transfer("consulting", { call_id: "c0" }), events).map((i) => i.text),
    ["Answered Maria"],
  );
});

test("a session ends on the server's kind of refusal, whatever its words", () => {
  assert.equal(L.sessionExpired({ error: "please sign in again", kind: "SessionExpired" }), true);
  assert.equal(L.sessionExpired({ error: "Bitte melden Sie sich erneut an", kind: "SessionExpired" }), true);
  assert.equal(L.sessionExpired({ error: "please sign in again", kind: "Forbidden" }), false);
  assert.equal(L.sessionExpired({ error: "agent-b is already signed in elsewhere; sign in here instead", kind: "Conflict" }), false);
  assert.equal(L.sessionExpired({ error: "The server could not be reached. Check your connection and try again." }), false);
  assert.equal(L.sessionExpired({ session: "s1" }), false);
});

test("the caller's headline follows the server's view, and this page's memory until it arrives", () => {
  const seen = { agentName: "Bea", wasOnHold: true, firstAgent: "agent-a" };
  assert.deepEqual(L.callerHeadline({ status: "on_hold", note: "Bea is coming." }, seen), ["On hold — please wait", "Bea is coming."]);
  // Pushed status first (no server flags yet): a different agent than the first means transferred.
  assert.deepEqual(L.callerHeadline({ status: "active", agent: "agent-b" }, seen), [
    "Now connected to Bea",
    "Your call was transferred. They already know what it's about.",
  ]);
  assert.deepEqual(L.callerHeadline({ status: "active", agent: "agent-a" }, { ...seen, agentName: "Ada" }), ["You're back with Ada", ""]);
  // The server's flags win over the page's guess (a reload forgot the first agent).
  assert.deepEqual(L.callerHeadline({ status: "active", agent: "agent-b", transferred: false, back: false }, seen), [
    "You're talking to Bea",
    "",
  ]);
  assert.equal(
    L.callerHeadline({ status: "active", with: "agent-b", with_name: "Bea" }, { agentName: "Ada" })[0],
    "You're talking to Ada and Bea",
  );
  assert.deepEqual(L.callerHeadline({ status: "waiting", ringing: "agent-b", ringing_name: "Bea" }, seen), [
    "Calling Bea…",
    "Please stay on the line.",
  ]);
  assert.equal(L.callerHeadline({ status: "ended" }, seen)[0], "Call ended");
  assert.equal(L.callerHeadline(null, seen)[0], "Waiting for the next available agent…");
});

test("the caller's place in the queue and the estimated wait", () => {
  assert.equal(
    L.queueText({ status: "waiting", queue: { place: 1, estimated_wait_s: 20 } }),
    "You're next in line · estimated wait under a minute",
  );
  assert.equal(
    L.queueText({ status: "waiting", queue: { place: 3, estimated_wait_s: 150 } }),
    "You're number 3 in line · estimated wait about 3 min",
  );
  assert.equal(
    L.queueText({ status: "waiting", queue: { place: 2, estimated_wait_s: null } }),
    "You're number 2 in line · no agent is taking calls right now",
  );
  assert.equal(L.queueText({ status: "active", queue: { place: 1 } }), null);
  assert.equal(L.agentCountText(1), "1 agent available now.");
  assert.equal(L.agentCountText(3), "3 agents available now.");
  assert.match(L.agentCountText(0), /wait in the queue/);
});

test("one page, several roles: the microphone is the shown role's once two roles are live", () => {
  assert.equal(L.micHolder(1, "b"), null);
  assert.equal(L.micHolder(2, "b"), "b");
  assert.equal(L.micHolder(2, null), "");
  assert.equal(L.micAllowed(null, "a"), true);
  assert.equal(L.micAllowed("b", "a"), false);
  assert.equal(L.micAllowed("", "a"), false);
  assert.equal(L.micAllowed("a", "a"), true);
});

test("why a room was left, and whether rejoining can help", () => {
  const R = { UNKNOWN_REASON: 0, CLIENT_INITIATED: 1, DUPLICATE_IDENTITY: 2, PARTICIPANT_REMOVED: 4, ROOM_DELETED: 5 };
  assert.deepEqual(L.disconnectWhy(5, R, false), { why: "The room was closed.", final: true });
  assert.deepEqual(L.disconnectWhy(4, R, false), { why: "You were moved out of this room.", final: true });
  assert.deepEqual(L.disconnectWhy(2, R, false), { why: "You joined this room from another window.", final: true });
  assert.deepEqual(L.disconnectWhy(0, R, true), { why: "You left.", final: true });
  assert.deepEqual(L.disconnectWhy(0, R, false), { why: "Disconnected.", final: false });
});
