// Unit tests of the desk's "draw this panel again?" decisions (ui/static/desk/): a panel is drawn
// again only when its inputs (the plain data it shows) changed. No DOM: the inputs are plain objects
// and PanelCache only compares them; drawing is left to the browser tests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PanelCache } from "../../ui/static/desk/panel.js";
import { callCardInputs } from "../../ui/static/desk/call_card.js";
import { headInputs, messagesInputs, signInInputs } from "../../ui/static/desk/header.js";
import { incomingCallsInputs } from "../../ui/static/desk/incoming_calls.js";
import { incomingTransferInputs } from "../../ui/static/desk/incoming_transfer.js";
import { captionsInputs, summaryInputs } from "../../ui/static/desk/live.js";
import { timelineInputs } from "../../ui/static/desk/timeline.js";

const transfer = (extra) => ({ transfer_id: "t1", call_id: "c1", state: "consulting", target_kind: "agent", target: "agent-b", ...extra });

function stubDesk(extra) {
  const desk = {
    form: { identity: "agent-a", name: "Ada", passcode: "", target: "", phone: "", reason: "" },
    me: { identity: "agent-a", name: "Ada" },
    snap: {
      me: { identity: "agent-a", state: "busy", label: "On a call", ready: true, available: false },
      agents: [{ identity: "agent-b", name: "Bea", available: true }],
      queues: [],
      phone: { enabled: false },
      call: { call_id: "c1", caller_name: "Maria", status: "active" },
      incoming: [],
    },
    busy: "",
    error: "",
    notice: "",
    callRoom: { connected: true },
    captions: [],
    rolling: {},
    captionLag: {},
    summaries: {},
    qa: {},
    events: {},
    transfers: {},
    callLog: [],
    focusTid: null,
    lastCallId: null,
    currentCallId() {
      return this.snap && this.snap.call ? this.snap.call.call_id : null;
    },
  };
  return Object.assign(desk, extra);
}

test("a panel is drawn once per distinct inputs, and its node is kept otherwise", () => {
  const cache = new PanelCache();
  let draws = 0;
  const draw = (d) => ({ drawn: ++draws, d });
  const first = cache.draw("call", { status: "active" }, draw);
  assert.equal(first.drawn, true);
  const again = cache.draw("call", { status: "active" }, draw);
  assert.equal(again.drawn, false);
  assert.equal(again.node, first.node);
  assert.equal(draws, 1);
  const held = cache.draw("call", { status: "on_hold" }, draw);
  assert.equal(held.drawn, true);
  assert.notEqual(held.node, first.node);
  // Panels are kept apart: the same inputs under another name are drawn for that panel.
  assert.equal(cache.draw("other", { status: "on_hold" }, draw).drawn, true);
  assert.equal(draws, 3);
});

test("a caption changes the captions only: the call card, the header and the timeline stay", () => {
  const desk = stubDesk();
  const before = {
    call: JSON.stringify(callCardInputs(desk)),
    head: JSON.stringify(headInputs(desk)),
    timeline: JSON.stringify(timelineInputs(desk)),
    summary: JSON.stringify(summaryInputs(desk)),
    captions: JSON.stringify(captionsInputs(desk)),
  };
  desk.captions.push({ call_id: "c1", speaker: "caller", text: "my order is late" });
  assert.equal(JSON.stringify(callCardInputs(desk)), before.call);
  assert.equal(JSON.stringify(headInputs(desk)), before.head);
  assert.equal(JSON.stringify(timelineInputs(desk)), before.timeline);
  assert.equal(JSON.stringify(summaryInputs(desk)), before.summary);
  assert.notEqual(JSON.stringify(captionsInputs(desk)), before.captions);
  assert.deepEqual(captionsInputs(desk).lines, [{ speaker: "Caller", text: "my order is late" }]);
  // Another call's caption is not this desk's to show.
  const now = JSON.stringify(captionsInputs(desk));
  desk.captions.push({ call_id: "c2", speaker: "caller", text: "elsewhere" });
  assert.equal(JSON.stringify(captionsInputs(desk)), now);
});

test("the call card follows the call, its room, the busy flag and the transfer's progress", () => {
  const desk = stubDesk();
  const base = JSON.stringify(callCardInputs(desk));
  desk.callRoom.connected = false; // "Join call audio" appears
  assert.notEqual(JSON.stringify(callCardInputs(desk)), base);
  desk.callRoom.connected = true;
  desk.busy = "Summarizing the call…"; // Start warm transfer is disabled
  assert.notEqual(JSON.stringify(callCardInputs(desk)), base);
  desk.busy = "";
  assert.equal(JSON.stringify(callCardInputs(desk)), base);
  desk.snap.transfer_out = transfer();
  const consulting = callCardInputs(desk);
  assert.equal(consulting.controls, null);
  assert.equal(consulting.progress.t.state, "consulting");
  desk.summaries.t1 = { brief: "Maria's order 4417 is late." }; // the brief arrives
  assert.notEqual(JSON.stringify(callCardInputs(desk)), JSON.stringify(consulting));
  const briefed = JSON.stringify(callCardInputs(desk));
  desk.qa.t1 = { 5: { at: 5, question: "order?", answer: "4417", found: true } }; // B asks the briefing
  assert.notEqual(JSON.stringify(callCardInputs(desk)), briefed);
});

test("the transfer controls pick the first target offered, and the card follows a new target", () => {
  const desk = stubDesk();
  assert.equal(callCardInputs(desk).controls.target, "agent-b");
  assert.equal(desk.form.target, "agent-b");
  const one = JSON.stringify(callCardInputs(desk));
  desk.snap.agents.push({ identity: "agent-c", name: "Cy", available: true });
  assert.notEqual(JSON.stringify(callCardInputs(desk)), one);
});

test("the incoming calls are drawn again when a shown wait changes, not otherwise", (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: 100_000 });
  const desk = stubDesk();
  desk.snap.call = null;
  desk.snap.incoming = [{ call_id: "c9", caller_name: "Lee", at: 95, offered_to: "agent-a" }];
  const first = JSON.stringify(incomingCallsInputs(desk));
  assert.deepEqual(incomingCallsInputs(desk).calls[0], { call_id: "c9", caller_name: "Lee", ringing: true, waiting: "5s" });
  t.mock.timers.tick(200);
  assert.equal(JSON.stringify(incomingCallsInputs(desk)), first);
  t.mock.timers.tick(1000);
  assert.notEqual(JSON.stringify(incomingCallsInputs(desk)), first);
});

test("the incoming transfer card follows its state, its brief and the decline reason", () => {
  const desk = stubDesk();
  const t = transfer({ from_name: "Ada", caller_name: "Maria" });
  const first = incomingTransferInputs(desk, t);
  assert.equal(first.reason, desk.form.reason); // an unknown reason became the first one
  assert.ok(first.reason);
  assert.equal(JSON.stringify(incomingTransferInputs(desk, { ...t })), JSON.stringify(first));
  assert.notEqual(JSON.stringify(incomingTransferInputs(desk, { ...t, state: "introducing" })), JSON.stringify(first));
  desk.summaries.t1 = { brief: "b" };
  assert.notEqual(JSON.stringify(incomingTransferInputs(desk, t)), JSON.stringify(first));
});

test("the header and the messages follow the sign-in, the availability and the notices", () => {
  const desk = stubDesk();
  const head = JSON.stringify(headInputs(desk));
  desk.snap.me = { ...desk.snap.me, state: "available", label: "Available" };
  assert.notEqual(JSON.stringify(headInputs(desk)), head);
  const messages = JSON.stringify(messagesInputs(desk));
  desk.notice = "The transfer went on to the next agent.";
  assert.notEqual(JSON.stringify(messagesInputs(desk)), messages);
  const form = JSON.stringify(signInInputs(desk));
  desk.elsewhere = true; // "Sign in here instead"
  assert.notEqual(JSON.stringify(signInInputs(desk)), form);
});

test("the timeline keeps the last call, marked over, until the next one", () => {
  const desk = stubDesk({ callLog: [{ call_id: "c1", at: 1000, text: "Answered Maria" }] });
  const live = timelineInputs(desk);
  assert.equal(live.over, false);
  assert.equal(live.items.length, 1);
  desk.lastCallId = "c1";
  desk.snap.call = null;
  const over = timelineInputs(desk);
  assert.equal(over.over, true);
  assert.deepEqual(over.items, live.items);
});
