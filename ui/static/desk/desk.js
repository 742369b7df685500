// The agent desk (Agent A and Agent B are the same desk with different identities): its state and
// the server, the rooms, the messages; what its buttons do is in desk/actions.js, and each panel's
// drawing in its own module:
//   part "desk":     desk/header.js (sign-in; name, availability; messages), desk/incoming_transfer.js,
//                    desk/call_card.js (with desk/transfer.js), desk/incoming_calls.js
//   part "live":     desk/live.js (rolling summary, live captions)
//   part "timeline": desk/timeline.js
// A panel is drawn again only when its inputs changed (desk/panel.js).
// Rooms: the lobby (receive-only notifications), the call room and the consult room.
// Everything follows LiveKit data messages; the server snapshot (agent_state) is
// fetched after each one, so a missed message can never leave the desk stale.
import { PROTOCOL as P } from "../protocol.js"; // the message types, generated from functions/events.py
import * as L from "../desk_logic.js"; // the desk's decisions (labels, notices, which room to join), tested by tests/js/
import { call, debounce, emit, patch } from "../dom.js";
import { room } from "../livekit_room.js";
import { SavedSession } from "../session.js";
import { DeskActions } from "./actions.js";
import { callCardInputs, drawCallCard } from "./call_card.js";
import { drawHead, drawMessages, drawSignIn, headInputs, messagesInputs, signInInputs } from "./header.js";
import { drawIncomingCalls, incomingCallsInputs } from "./incoming_calls.js";
import { drawIncomingTransfer, incomingTransferInputs } from "./incoming_transfer.js";
import { captionsInputs, drawCaptions, drawSummary, scrollCaptions, summaryInputs } from "./live.js";
import { PanelCache } from "./panel.js";
import { drawTimeline, timelineInputs } from "./timeline.js";

const LOBBY = "agents-lobby";
// Gradio gives a part without server functions ("live", "timeline") an empty `server`: not the desk's.
const hasFunctions = (server) => !!server && Object.keys(server).length > 0;
const { OPEN, DECLINE_REASONS } = L;

export class AgentDesk extends DeskActions {
  constructor(slot, props) {
    super();
    this.slot = slot;
    this.server = null;
    this.parts = {};
    this.defaults = { identity: props.wt_identity || `agent-${slot}`, name: props.wt_name || `Agent ${slot.toUpperCase()}` };
    this.form = {
      identity: this.defaults.identity,
      name: this.defaults.name,
      passcode: "",
      target: "",
      phone: "",
      reason: DECLINE_REASONS[0],
    };
    this.session = null;
    this.me = null;
    this.snap = null;
    this.busy = "";
    this.error = "";
    this.notice = "";
    this.captions = []; // {call_id, speaker, text, start, end}
    this.rolling = {}; // call_id → rolling summary
    this.captionLag = {}; // call_id → {behind_s, dropped, dropped_s} from the media worker
    this.summaries = {}; // transfer_id → summary
    this.qa = {}; // transfer_id → {at: exchange}: B's questions to the briefing and its answers
    this.events = {}; // transfer_id → {seq: event}
    this.transfers = {}; // transfer_id → transfer (last seen)
    this.callLog = []; // local call events for the timeline: {call_id, at, text}
    this.focusTid = null;
    this.consultTid = null;
    this.lastCallId = null; // the call the panels showed last: its timeline stays until the next one
    this._autoJoined = ""; // "room:status" the desk last joined by itself (never in a loop)
    this.saved = SavedSession.desk(slot); // the sign-in, kept across a reload of this tab
    this.panels = new PanelCache(); // the nodes each panel drew last, and from which inputs
    this.lobby = room(`${slot}-lobby`, { wt_label: "Lobby" });
    this.callRoom = room(`${slot}-call`, null);
    this.consult = room(`${slot}-consult`, null);
    for (const r of [this.lobby, this.callRoom, this.consult]) {
      r.addEventListener("data", (e) => this.onMessage(e.detail.msg));
    }
    this.callRoom.addEventListener("disconnected", () => this.refresh());
    this.callRoom.addEventListener("permissions", () => this.render());
    this.consult.addEventListener("disconnected", () => {
      this.consultTid = null;
      this.refresh();
    });
    this.consult.addEventListener("left", () => this.leftConsult());
    this.callRoom.addEventListener("left", () => this.render());
    this.refresh = debounce(() => this.load(), 120);
    setInterval(() => {
      if (this.session) this.load();
    }, 10000); // safety net only
  }

  attachPart(kind, root, server) {
    this.parts[kind] = root;
    if (hasFunctions(server) && !this.server) this.server = server;
    root.classList.add(`wt-agent-${kind}`);
    this.render();
    if (kind === "desk") this.resume();
  }

  // The page's boot (outside the tabs) resumes a saved sign-in before this tab is ever shown:
  // Gradio mounts a tab's components only when the tab is first opened.
  adopt(server) {
    if (hasFunctions(server) && !this.server) this.server = server;
    return this.resume();
  }

  // A reload keeps the sign-in (this tab only): the session is in sessionStorage (session.js).
  store(value) {
    this.saved.store(value);
  }

  // One resume at a time (the desk panel and the page panel both ask); done once the desk is back
  // in its rooms.
  resume() {
    return this.saved.resumeOnce(() => this._resume());
  }

  async _resume() {
    const saved = this.saved.load();
    if (this.session || !saved || !saved.session || !this.server) return;
    this.session = saved.session;
    this.me = saved.me || null; // the desk renders while agent_state is on its way
    const out = await this.fn("agent_state");
    if (out.error) {
      this.session = null;
      this.me = null;
      this.store(null);
      this.render();
      return;
    }
    if (out.me) this.me = { identity: out.me.identity, name: out.me.name };
    await this.connectLobby();
    await this.apply(out); // back into the consult and the call room (on hold: silent)
    emit("agent-signed-in", { slot: this.slot });
  }

  async connectLobby(token) {
    const provider = async () => {
      const t = await this.fn("agent_room_token", { room: LOBBY });
      return t.error ? t : t.token;
    };
    await this.lobby.connect(token || (await provider()), { publish: false, tokenProvider: provider });
  }

  // --- server ----------------------------------------------------------------------
  async fn(name, args) {
    return call(this.server, name, Object.assign({ session: this.session }, args || {}));
  }

  async signIn(replace = false) {
    this.busy = "Signing in…";
    this.error = "";
    this.elsewhere = false;
    this.render();
    const out = await call(this.server, "agent_sign_in", {
      identity: this.form.identity,
      name: this.form.name,
      passcode: this.form.passcode,
      replace,
    });
    this.busy = "";
    // Signed in in another tab or browser: only an explicit choice ends that session.
    if (out.error) {
      this.error = out.error;
      this.elsewhere = out.kind === "Conflict";
      this.render();
      return;
    }
    this.session = out.session;
    this.me = { identity: out.identity, name: out.name };
    this.store({ session: this.session, me: this.me });
    this.form.passcode = "";
    await this.connectLobby(out.lobby);
    await this.load();
    emit("agent-signed-in", { slot: this.slot });
  }

  async signOut() {
    await this.fn("agent_sign_out");
    await Promise.all([this.lobby.disconnect(true), this.callRoom.disconnect(true), this.consult.disconnect(true)]);
    this.session = null;
    this.store(null);
    this.me = null;
    this.snap = null;
    this.render();
    emit("agent-signed-out", { slot: this.slot });
  }

  async load() {
    if (!this.session) return;
    const out = await this.fn("agent_state");
    if (out.error) {
      if (L.sessionExpired(out)) {
        this.session = null;
        this.store(null);
        this.error = out.error;
      }
      this.render();
      return;
    }
    this.apply(out);
  }

  apply(snap) {
    if (snap.error) {
      this.error = snap.error;
      this.render();
      return;
    }
    this.snap = snap;
    for (const t of [snap.latest_transfer, snap.transfer_out, snap.transfer_in]) if (t) this.noteTransfer(t);
    const focus = snap.transfer_in || snap.transfer_out || snap.latest_transfer;
    if (focus) this.focusTid = focus.transfer_id;
    const current = this.currentCallId();
    if (current) this.lastCallId = current;
    const joined = Promise.all([this.syncConsult(), this.syncCall()]);
    this.render();
    return joined;
  }

  // The call this desk is on now: its own, or the one an incoming transfer is about.
  currentCallId() {
    return L.currentCallId(this.snap);
  }

  // In the call room whenever the state says so: this desk's call (also on hold, where the server
  // lets it neither speak nor hear), or the caller's room while handing over to me. Joined by
  // itself once per room and status, so "Leave" or a refused token is not retried in a loop.
  // A transfer to me that A completes or introduces brings me into the caller's room too.
  async syncCall() {
    const want = L.callToJoin(this.snap);
    if (!want || this.inCallRoom(want.room) || this._joiningCall || this._autoJoined === want.key) return;
    const room = want.room;
    this._autoJoined = want.key;
    const tok = await this.fn("agent_room_token", { room });
    if (this.inCallRoom(room)) return; // joined meanwhile (Accept)
    if (tok.error) {
      this.error = tok.error;
      this.render();
      return;
    }
    await this.joinCall(tok.token);
  }

  inCallRoom(room) {
    return !!this.callRoom.room && this.callRoom.roomName === room;
  }

  noteTransfer(t, event) {
    this.transfers[t.transfer_id] = Object.assign({}, this.transfers[t.transfer_id] || {}, t);
    const evs = (this.events[t.transfer_id] = this.events[t.transfer_id] || {});
    for (const e of t.events || []) evs[e.seq] = e;
    if (event) evs[event.seq] = event;
    if (t.summary) this.summaries[t.transfer_id] = t.summary;
    for (const q of t.qa || []) this.noteQA(t.transfer_id, q);
  }

  noteQA(tid, exchange) {
    (this.qa[tid] = this.qa[tid] || {})[exchange.at] = exchange;
  }

  // Join the consult while a transfer I'm part of is consulting; leave it afterwards.
  async syncConsult() {
    const t = L.consultToJoin(this.snap);
    if (t && this.consultTid !== t.transfer_id) {
      this.consultTid = t.transfer_id;
      const tok = await this.fn("agent_room_token", { room: t.consult_room });
      if (tok.error) {
        this.consultTid = null;
        this.error = tok.error;
        this.render();
        return;
      }
      await this.consult.connect(tok.token, {
        publish: true,
        tokenProvider: async () => {
          const x = await this.fn("agent_room_token", { room: t.consult_room });
          return x.error ? x : x.token;
        },
      });
    } else if (!t && this.consultTid && this.consult.connected) {
      this.consultTid = null;
      await this.consult.disconnect(true);
    }
  }

  // --- messages -------------------------------------------------------------------------
  onMessage(msg) {
    const p = msg.payload || {};
    const type = msg.type;
    if (type.startsWith(P.TRANSFER_PREFIX) && p.transfer) {
      const t = p.transfer;
      this.noteTransfer(t, p.event);
      if (p.summary) this.summaries[t.transfer_id] = p.summary;
      this.focusTid = t.transfer_id;
      this.onTransferState(this.transfers[t.transfer_id], p);
    } else if (type === P.TRANSFER_OFFER_MOVED) {
      this.notice = "The transfer went on to the next agent.";
    } else if (type === P.TRANSFER_SUMMARY && p.transfer_id) {
      this.summaries[p.transfer_id] = p.summary;
    } else if (type === P.TRANSFER_QA && p.transfer_id && p.exchange) {
      this.noteQA(p.transfer_id, p.exchange);
    } else if (type === P.TRANSCRIPT_SEGMENT && L.isMyCall(this.snap, p.call_id)) {
      this.captions.push(p);
      if (this.captions.length > 200) this.captions.splice(0, this.captions.length - 200);
    } else if (type === P.SUMMARY_UPDATED && p.call_id) {
      this.rolling[p.call_id] = p.summary;
    } else if (type === P.TRANSCRIPT_STATUS && p.call_id) {
      this.captionLag[p.call_id] = p;
    }
    emit("lobby-message", { slot: this.slot, type });
    this.render();
    if (![P.TRANSCRIPT_SEGMENT, P.SUMMARY_UPDATED, P.TRANSFER_SUMMARY, P.TRANSCRIPT_STATUS, P.TRANSFER_QA].includes(type)) this.refresh();
  }

  onTransferState(t) {
    const update = L.transferUpdate(t, this.me, this.snap && this.snap.agents, this.events[t.transfer_id]);
    if ("busy" in update) this.busy = update.busy;
    if ("notice" in update) this.notice = update.notice;
    // The caller is back with A: the target leaves the caller's room it was joining.
    if (update.leaveCall && this.callRoom.connected && this.callRoom.roomName === t.call_room) this.callRoom.disconnect(true);
  }

  // "Leave" in the consult: for the target that is a decline, at once (a reload is not a leave:
  // the server gives a reloading target a few seconds to come back instead).
  leftConsult() {
    const t = this.snap && this.snap.transfer_in;
    this.consultTid = null;
    if (t && t.state === "consulting") return this.transferAction("decline", t, "left the consult");
    this.refresh();
    return null;
  }

  // --- rendering: each panel from its inputs, drawn again only when they changed --------------
  render() {
    this.renderDesk();
    this.renderLive();
    this.renderTimeline();
  }

  // `name`'s node: the one on the page while its inputs are the same, else a new one.
  panel(name, inputs, draw) {
    return this.panels.draw(name, inputs, (d) => draw(d, this));
  }

  renderDesk() {
    const root = this.parts.desk;
    if (!root) return;
    if (!this.session) {
      patch(root, [
        ...this.panel("signin", signInInputs(this), drawSignIn).node,
        this.panel("messages", messagesInputs(this), drawMessages).node,
      ]);
      return;
    }
    const snap = this.snap || {};
    const incoming = snap.transfer_in && OPEN.has(snap.transfer_in.state) ? snap.transfer_in : null;
    patch(root, [
      this.panel("head", headInputs(this), drawHead).node,
      this.panel("messages", messagesInputs(this), drawMessages).node,
      incoming ? this.panel("incoming-transfer", incomingTransferInputs(this, incoming), drawIncomingTransfer).node : null,
      snap.call ? this.panel("call", callCardInputs(this), drawCallCard).node : null,
      !snap.call && !incoming ? this.panel("incoming-calls", incomingCallsInputs(this), drawIncomingCalls).node : null,
    ]);
  }

  renderLive() {
    const root = this.parts.live;
    if (!root) return;
    const captions = this.panel("captions", captionsInputs(this), drawCaptions);
    patch(root, [this.panel("summary", summaryInputs(this), drawSummary).node, captions.node]);
    if (captions.drawn) scrollCaptions(captions.node);
  }

  renderTimeline() {
    const root = this.parts.timeline;
    if (!root) return;
    patch(root, [this.panel("timeline", timelineInputs(this), drawTimeline).node]);
  }
}

// One desk per slot ("a", "b"), whichever of its parts mounts first; the page's boot may ask before
// any (props null).
const desks = {};
export function desk(slot, props) {
  if (!desks[slot]) desks[slot] = new AgentDesk(slot, props || {});
  const d = desks[slot];
  if (props && props.wt_identity && !d.session && d.form.identity === d.defaults.identity) {
    d.defaults = { identity: props.wt_identity, name: props.wt_name || props.wt_identity };
    d.form.identity = d.defaults.identity;
    d.form.name = d.defaults.name;
  }
  return d;
}

// The session of an agent signed in on this page (the Calls tab reads the dashboard with it).
export function signedInSession() {
  const d = Object.values(desks).find((x) => x.session);
  return d ? d.session : null;
}
