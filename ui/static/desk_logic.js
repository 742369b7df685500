// The desks' and the caller page's decisions, as pure functions of what the server said: which
// label a state gets, what a notice says, which room a desk joins by itself, who has the page's
// microphone. No DOM, no LiveKit, no server: an ES module the page's modules import
// (`import * as L from "./desk_logic.js"`), and node's test runner too (tests/js/).

// --- transfers ---------------------------------------------------------------------------
const STATE_LABEL = {
  idle: "Starting",
  consulting: "Consulting",
  completing: "Completing",
  introducing: "Introducing",
  completed: "Completed",
  cancelled: "Cancelled",
  declined: "Declined",
  timed_out: "Timed out",
  target_left: "Target left",
  caller_left: "Caller hung up",
  failed: "Failed",
};
const OPEN = new Set(["idle", "consulting", "completing", "introducing"]);
// Events of a queue or hunt-list transfer that change no state (the offer moving on), and of an introduction.
const EVENT_LABEL = {
  offer_declined: (d) => `Declined by ${d.agent}${d.reason ? ` — ${d.reason}` : ""}`,
  offer_timed_out: (d) => `No answer from ${d.agent}`,
  offer_left: (d) => `${d.agent} left the consult`,
  offered: (d) => `Offered to ${d.to}`,
  introduced: () => "Introduced: caller, A and B together",
};
// The reasons B picks from when declining (shown in A's timeline and the event log).
const DECLINE_REASONS = ["Not my area", "Busy with another customer", "Caller needs a different team", "Other"];
// Twilio's status of the outbound phone leg (status callbacks), as A reads it.
const LEG_LABEL = {
  dialing: "Dialing",
  queued: "Dialing",
  initiated: "Dialing",
  ringing: "Ringing",
  "in-progress": "Answered: hearing the brief",
  answered: "Answered: hearing the brief",
  completed: "Hung up",
  busy: "Busy",
  "no-answer": "No answer",
  failed: "Call failed",
  canceled: "Call cancelled",
};

const stateLabel = (state) => STATE_LABEL[state] || state;

// The call a desk is on now (snap: the server's agent_state): its own, or the one an open
// incoming transfer is about.
function currentCallId(snap) {
  snap = snap || {};
  if (snap.call) return snap.call.call_id;
  return snap.transfer_in && OPEN.has(snap.transfer_in.state) ? snap.transfer_in.call_id : null;
}

function isMyCall(snap, callId) {
  snap = snap || {};
  return !!callId && !!((snap.call && snap.call.call_id === callId) || (snap.transfer_in && snap.transfer_in.call_id === callId));
}

// The call room a desk belongs in by itself: its own call (also on hold), or the caller's room
// while a transfer to this (agent) desk is completing or introducing. `key` changes with the
// status, so the desk joins once per room and status (a "Leave" is not undone in a loop).
function callToJoin(snap) {
  snap = snap || {};
  const tin = snap.transfer_in;
  const handing = tin && tin.target_kind === "agent" && ["completing", "introducing"].includes(tin.state);
  const room = snap.call ? snap.call.room : handing ? tin.call_room : null;
  if (!room) return null;
  return { room, key: `${room}:${snap.call ? snap.call.status : tin.state}` };
}

// The transfer whose consult room a desk belongs in: one it is part of, consulting an agent.
function consultToJoin(snap) {
  snap = snap || {};
  return [snap.transfer_out, snap.transfer_in].find((x) => x && x.state === "consulting" && x.target_kind === "agent") || null;
}

// What a desk shows when a transfer it is part of changes state. me: {identity} of this desk;
// agents: [{identity, name}] (display names); events: {seq: event} of the transfer. Returns the
// fields to change ({busy, notice}, each only when it changes) and `leaveCall` when this desk (the
// target) must leave the caller's room because the caller is back with A.
function transferUpdate(t, me, agents, events) {
  const nameOf = (identity) => {
    const agent = (agents || []).find((a) => a.identity === identity);
    return agent ? agent.name : identity;
  };
  const mine = !!me && t.from_agent === me.identity;
  const who = mine ? (t.target_kind === "agent" ? nameOf(t.target) : t.target) : nameOf(t.from_agent);
  const reason = t.reason ? ` (${t.reason})` : "";
  const s = t.state;
  if (s === "completed") {
    return {
      busy: "",
      notice: mine ? `Transfer completed: the caller is now with ${who}.` : `Transfer completed: you're now with the caller.`,
    };
  }
  if (s === "completing") return { busy: mine ? `Handing the caller to ${who}…` : "Joining the caller…" };
  if (s === "introducing") {
    const together = Object.values(events || {}).some((e) => e.detail && e.detail.event === "introduced");
    const notice = mine
      ? together
        ? `You, the caller and ${who} are talking. Leave when you're done.`
        : `Introducing ${who}: they're joining you and the caller…`
      : together
        ? `You're with the caller and ${who}; they'll leave shortly.`
        : `Joining the caller with ${who}…`;
    return { busy: "", notice };
  }
  if (s === "consulting") {
    return {
      busy: "",
      notice: mine
        ? `Consulting ${who}: they're hearing the brief.`
        : `Warm transfer from ${who}: listen to the brief, then accept or decline.`,
    };
  }
  if (s === "caller_left") {
    // Nobody is back with anyone: the call is over.
    return {
      busy: "",
      notice: mine
        ? `The caller hung up during the transfer to ${who}: the call has ended.`
        : `The caller hung up: the transfer from ${who} is off.`,
    };
  }
  if (!OPEN.has(s)) {
    const label = stateLabel(s).toLowerCase();
    return {
      busy: "",
      notice: mine ? `Transfer ${label}${reason}: you're back with the caller.` : `Transfer ${label}${reason}.`,
      leaveCall: !mine,
    };
  }
  return {};
}

// A's line under a transfer in progress: what the caller and the target hear now.
function transferSays(t) {
  const consulting = t.state === "consulting";
  if (t.target_kind === "phone") {
    return consulting
      ? `The caller hears hold music. ${t.target} hears the brief, then presses 1 to accept or 2 to decline.`
      : "Handing over: the phone is joining the caller.";
  }
  if (t.state === "introducing") {
    return t.introduced
      ? "You, the caller and the target are talking. Leave when you're done: the caller stays with them."
      : "Introducing: the target is joining you and the caller.";
  }
  return consulting
    ? `The caller hears hold music${t.queue ? ` and that a colleague from ${t.queue} is coming` : ""}. You're in the consult room with the target; the brief is played to them.`
    : "Handing over: the target is joining the caller.";
}

// The phone leg's status as A reads it ("" before Twilio reported any).
function legText(leg) {
  if (!leg) return "";
  return String(leg.answered_by || "").startsWith("machine") ? "Voicemail" : LEG_LABEL[leg.status] || leg.status;
}

// What the media worker said about its backlog: behind (more than 3 s) and what it dropped ("" when neither).
function lagText(lag) {
  if (!lag) return "";
  const parts = [];
  if (lag.behind_s > 3) parts.push(`Captions are ${Math.round(lag.behind_s)} s behind: the media worker is busy.`);
  if (lag.dropped > 0) parts.push(`${Math.round(lag.dropped_s)} s of speech (${lag.dropped} utterances) were not transcribed.`);
  return parts.join(" ");
}

// The timeline of the call `shown`: the desk's own call events, and the transfer's (when it is about
// that call), in time order. callLog: [{call_id, at, text}]; events: {seq: event} of `transfer`.
function timelineItems(callLog, shown, transfer, events) {
  const items = (callLog || []).filter((c) => c.call_id === shown).map((c) => ({ at: c.at, text: c.text, kind: "call" }));
  if (transfer && transfer.call_id === shown) {
    for (const e of Object.values(events || {})) {
      const d = e.detail || {};
      if (d.event && EVENT_LABEL[d.event]) {
        items.push({ at: e.at, kind: d.event, text: `${EVENT_LABEL[d.event](d)} · by ${e.actor}` });
        continue;
      }
      const detail = d.reason || d.target ? ` — ${d.reason || `to ${d.target}`}` : "";
      items.push({ at: e.at, kind: e.to_state, text: `${stateLabel(e.to_state)} · by ${e.actor}${detail}` });
    }
  }
  return items.sort((a, b) => a.at - b.at);
}

// A server function's refusal that ends the desk's session (expired, or signed in elsewhere): told
// by its kind (ui/backend.py answers {error, kind}, kind the error's class), never by its words.
const sessionExpired = (answer) => !!answer && answer.kind === "SessionExpired";

// --- the caller ---------------------------------------------------------------------------
// The caller's headline and the line under it. view: the server's caller_status (merged with
// pushed call.status messages); seen: what this page saw ({agentName, wasOnHold, firstAgent}).
function callerHeadline(view, seen) {
  const v = view || {};
  const name = seen.agentName;
  if (v.status === "ended") return ["Call ended", "Thanks for calling."];
  if (v.status === "on_hold")
    return ["On hold — please wait", v.note || "Your agent is bringing in a colleague who can help. Music plays while you wait."];
  if (v.status === "active" && v.with)
    return [`You're talking to ${name} and ${v.with_name || v.with}`, "Your agent is introducing a colleague who can help."];
  if (v.status === "active") {
    // The server knows the call's history (a reload forgets this page's); a fresh status message
    // is read with what this page saw until the server's view arrives.
    const back = v.back !== undefined ? v.back : seen.wasOnHold && v.agent === seen.firstAgent;
    const transferred = v.transferred !== undefined ? v.transferred : !!seen.firstAgent && v.agent !== seen.firstAgent;
    if (back) return [`You're back with ${name}`, ""];
    if (transferred) return [`Now connected to ${name}`, "Your call was transferred. They already know what it's about."];
    return [`You're talking to ${name}`, ""];
  }
  if (v.ringing) return [`Calling ${v.ringing_name || v.ringing}…`, "Please stay on the line."];
  return ["Waiting for the next available agent…", "Please stay on the line."];
}

// While waiting: the place in the queue and an estimated wait (null when not waiting in a queue).
function queueText(view) {
  const v = view || {};
  const q = v.queue;
  if (v.status !== "waiting" || !q) return null;
  const place = q.place === 1 ? "You're next in line" : `You're number ${q.place} in line`;
  const wait =
    q.estimated_wait_s == null
      ? "no agent is taking calls right now"
      : q.estimated_wait_s < 60
        ? "estimated wait under a minute"
        : `estimated wait about ${Math.round(q.estimated_wait_s / 60)} min`;
  return `${place} · ${wait}`;
}

function agentCountText(n) {
  return n ? `${n} agent${n === 1 ? "" : "s"} available now.` : "No agent is available right now: you'll wait in the queue.";
}

// --- one page, several roles (see livekit_room.js) ----------------------------------------------
// The role that has the page's microphone: null while the page plays at most one role (it keeps
// it), else the role whose tab was shown last, "" (nobody) before any was.
function micHolder(liveRoles, shownRole) {
  return liveRoles <= 1 ? null : shownRole || "";
}
const micAllowed = (holder, role) => holder === null || holder === role;

// Why a room was left, from LiveKit's DisconnectReason (R: its enum); `final` when rejoining
// with a fresh token cannot help.
function disconnectWhy(reason, R, leaving) {
  R = R || {};
  if (leaving || reason === R.CLIENT_INITIATED) return { why: "You left.", final: true };
  if (reason === R.ROOM_DELETED) return { why: "The room was closed.", final: true };
  if (reason === R.PARTICIPANT_REMOVED) return { why: "You were moved out of this room.", final: true };
  if (reason === R.DUPLICATE_IDENTITY) return { why: "You joined this room from another window.", final: true };
  return { why: "Disconnected.", final: false };
}

export {
  STATE_LABEL,
  OPEN,
  DECLINE_REASONS,
  stateLabel,
  currentCallId,
  isMyCall,
  callToJoin,
  consultToJoin,
  transferUpdate,
  transferSays,
  legText,
  lagText,
  timelineItems,
  sessionExpired,
  callerHeadline,
  queueText,
  agentCountText,
  micHolder,
  micAllowed,
  disconnectWhy,
};
