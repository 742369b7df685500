// Agent tab (Agent A and Agent B are the same desk with different identities).
//
// Parts: "desk" (sign-in, availability, incoming calls, the call, transfer controls,
// the incoming-transfer card), "live" (rolling summary and captions) and "timeline".
// Rooms: the lobby (receive-only notifications), the call room and the consult room.
// Everything follows LiveKit data messages; the server snapshot (agent_state) is
// fetched after each one, so a missed message can never leave the desk stale.
(function () {
  "use strict";
  const WT = window.WT;
  const { el } = WT;
  const P = WT.PROTOCOL; // the message types (protocol.js, generated from functions/events.py)
  const LOBBY = "agents-lobby";
  // The desk's decisions (labels, notices, which room to join): desk_logic.js, tested by tests/js/.
  const L = WT.logic;
  const { OPEN, DECLINE_REASONS } = L;
  const AVAIL_CLASS = { available: "on", away: "off", offline: "off" };
  const PHONE_HINT = {
    off: "Phone transfers need Twilio: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER and PUBLIC_BASE_URL.",
    noSip:
      "No LiveKit SIP endpoint (LIVEKIT_SIP_URI): the number hears the brief and can answer, but can't join the caller. Accepting ends the transfer and the caller stays with you.",
  };

  // Keep focus and typed text when a part is redrawn.
  WT.swap = function swap(root, nodes) {
    const active = document.activeElement;
    const name = active && root.contains(active) ? active.getAttribute("name") : null;
    const pos = name && typeof active.selectionStart === "number" ? active.selectionStart : null;
    root.replaceChildren(...nodes.filter(Boolean));
    if (name) {
      const again = root.querySelector(`[name="${name}"]`);
      if (again) {
        again.focus();
        if (pos !== null && typeof again.setSelectionRange === "function") {
          try {
            again.setSelectionRange(pos, pos);
          } catch {
            /* not a text input */
          }
        }
      }
    }
  };

  WT.summaryCard = function summaryCard(summary, opts) {
    opts = opts || {};
    if (!summary) return el("div", { class: "wt-empty" }, opts.empty || "No summary yet.");
    const rows = [];
    const row = (label, value) => {
      if (value && (!Array.isArray(value) || value.length))
        rows.push(
          el(
            "div",
            { class: "wt-sum-row" },
            el("span", { class: "wt-sum-k" }, label),
            el("span", { class: "wt-sum-v" }, Array.isArray(value) ? value.join("; ") : value),
          ),
        );
    };
    row("Caller", summary.caller_name || "");
    row("Issue", summary.issue || "");
    row(
      "IDs",
      (summary.identifiers || []).map((i) => `${i.kind} ${i.value}`),
    );
    row("Facts", summary.key_facts || []);
    row("Tried", summary.already_tried || []);
    row("Wants", summary.requested_outcome || "");
    if (summary.sentiment && summary.sentiment !== "unknown") row("Mood", summary.sentiment);
    return el(
      "div",
      { class: "wt-summary", dataset: { testid: opts.testid || "summary" } },
      summary.brief ? el("p", { class: "wt-brief" }, summary.brief) : null,
      rows.length ? el("div", { class: "wt-sum-rows" }, rows) : null,
      el("div", { class: "wt-small wt-muted" }, `source: ${summary.source || "unknown"}`),
    );
  };

  class AgentDesk {
    constructor(slot, props) {
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
      this.lobby = WT.room(`${slot}-lobby`, { wt_label: "Lobby" });
      this.callRoom = WT.room(`${slot}-call`, null);
      this.consult = WT.room(`${slot}-consult`, null);
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
      this.refresh = WT.debounce(() => this.load(), 120);
      setInterval(() => {
        if (this.session) this.load();
      }, 10000); // safety net only
      WT.agents = WT.agents || {};
      WT.agents[slot] = this;
    }

    attachPart(kind, root, server) {
      this.parts[kind] = root;
      if (server && !this.server) this.server = server;
      root.classList.add(`wt-agent-${kind}`);
      this.render();
      if (kind === "desk") this.resume();
    }

    // The page's boot (outside the tabs) resumes a saved sign-in before this tab is ever shown:
    // Gradio mounts a tab's components only when the tab is first opened.
    adopt(server) {
      if (server && !this.server) this.server = server;
      return this.resume();
    }

    // A reload keeps the sign-in (this tab only): the session is in sessionStorage.
    store(value) {
      try {
        if (value) sessionStorage.setItem(`wt-agent-${this.slot}`, JSON.stringify(value));
        else sessionStorage.removeItem(`wt-agent-${this.slot}`);
      } catch {
        /* storage unavailable: sign in again after a reload */
      }
    }

    // One resume at a time (the desk panel and the page panel both ask); done once the desk is back
    // in its rooms.
    resume() {
      if (!this._resuming)
        this._resuming = this._resume().finally(() => {
          this._resuming = null;
        });
      return this._resuming;
    }

    async _resume() {
      let saved;
      try {
        saved = JSON.parse(sessionStorage.getItem(`wt-agent-${this.slot}`) || "null");
      } catch {
        saved = null;
      }
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
      WT.emit("agent-signed-in", { slot: this.slot });
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
      return WT.call(this.server, name, Object.assign({ session: this.session }, args || {}));
    }

    async signIn(replace = false) {
      this.busy = "Signing in…";
      this.error = "";
      this.elsewhere = false;
      this.render();
      const out = await WT.call(this.server, "agent_sign_in", {
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
      WT.emit("agent-signed-in", { slot: this.slot });
    }

    async signOut() {
      await this.fn("agent_sign_out");
      await Promise.all([this.lobby.disconnect(true), this.callRoom.disconnect(true), this.consult.disconnect(true)]);
      this.session = null;
      this.store(null);
      this.me = null;
      this.snap = null;
      this.render();
      WT.emit("agent-signed-out", { slot: this.slot });
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
      WT.emit("lobby-message", { slot: this.slot, type });
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

    // --- actions ----------------------------------------------------------------------
    async act(progress, fnName, args, after) {
      this.busy = progress;
      this.error = "";
      this.render();
      const out = await this.fn(fnName, args);
      this.busy = "";
      if (out.error) {
        this.error = out.error;
        this.render();
        return null;
      }
      if (out.me) this.apply(out);
      if (after) await after(out);
      this.render();
      return out;
    }

    setAvailable(on) {
      return this.act(on ? "Going available…" : "Going unavailable…", "agent_available", { available: on });
    }

    acceptCall(callId) {
      return this.act("Answering…", "agent_accept_call", { call_id: callId }, async (out) => {
        this.captions = [];
        this.notice = "";
        this.callLog.push({ call_id: out.call.call_id, at: Date.now() / 1000, text: `Answered ${out.call.caller_name || "the caller"}` });
        await this.joinCall(out.token);
      });
    }

    async joinCall(token) {
      const room = token.room;
      if (this.inCallRoom(room) || this._joiningCall) return; // joined or joining already (syncCall)
      this._joiningCall = true;
      try {
        await this.callRoom.connect(token, {
          publish: true,
          tokenProvider: async () => {
            const x = await this.fn("agent_room_token", { room });
            return x.error ? x : x.token;
          },
        });
      } finally {
        this._joiningCall = false;
      }
    }

    async rejoinCall() {
      const call = this.snap && this.snap.call;
      if (!call) return;
      const tok = await this.fn("agent_room_token", { room: call.room });
      if (tok.error) {
        this.error = tok.error;
        this.render();
        return;
      }
      await this.joinCall(tok.token);
    }

    endCall() {
      const call = this.snap && this.snap.call;
      if (!call) return null;
      return this.act("Ending the call…", "agent_end_call", { call_id: call.call_id }, async () => {
        this.callLog.push({ call_id: call.call_id, at: Date.now() / 1000, text: "Call ended" });
        await this.callRoom.disconnect(true);
      });
    }

    startTransfer() {
      const call = this.snap && this.snap.call;
      const target = (this.form.phone || "").trim() || this.form.target;
      if (!call) return null;
      if (!target) {
        this.error = "Pick an agent or a queue, or enter a phone number.";
        this.render();
        return null;
      }
      this.notice = "";
      return this.act(
        "Summarizing the call and preparing the spoken brief…",
        "agent_transfer",
        { call_id: call.call_id, target },
        async (out) => {
          this.form.phone = "";
          if (out.transfer) {
            this.noteTransfer(out.transfer);
            this.focusTid = out.transfer.transfer_id;
          }
        },
      );
    }

    transferAction(action, t, reason) {
      const text = {
        complete: "Completing the transfer…",
        cancel: "Cancelling…",
        accept: "Accepting: joining the caller…",
        decline: "Declining…",
        introduce: "Introducing: bringing them into the call…",
        leave: "Leaving the call…",
      }[action];
      const args = { transfer_id: t.transfer_id, action };
      if (action === "decline") args.reason = reason || this.form.reason || "";
      return this.act(text, "agent_transfer_action", args, async (out) => {
        if (action === "leave") {
          this.callLog.push({ at: Date.now() / 1000, text: "Left the call" });
          await this.callRoom.disconnect(true);
        }
        if (out.join) {
          this.captions = [];
          this.callLog.push({ call_id: t.call_id, at: Date.now() / 1000, text: "Joined the caller" });
          this.busy = "Joining the caller…";
          await this.joinCall(out.join);
        }
      });
    }

    // --- rendering ----------------------------------------------------------------------
    render() {
      this.renderDesk();
      this.renderLive();
      this.renderTimeline();
    }

    renderDesk() {
      const root = this.parts.desk;
      if (!root) return;
      const nodes = [];
      if (!this.session) {
        nodes.push(
          el("h2", { class: "wt-title" }, "Agent desk"),
          el(
            "p",
            { class: "wt-muted" },
            "Sign in to take calls. Agent A and Agent B are the same desk: any agent can start or receive a transfer.",
          ),
          el(
            "form",
            {
              class: "wt-form",
              onsubmit: (e) => {
                e.preventDefault();
                this.signIn();
              },
            },
            this.input("identity", "Agent ID", { autocomplete: "username", maxlength: 64 }),
            this.input("name", "Display name", { maxlength: 80 }),
            this.input("passcode", "Passcode", {
              type: "password",
              autocomplete: "current-password",
              placeholder: "Not needed in local mode",
            }),
            el("button", { type: "submit", class: "wt-btn wt-primary wt-signin", disabled: !!this.busy }, "Sign in"),
            this.elsewhere
              ? el(
                  "button",
                  { type: "button", class: "wt-btn wt-signin-here", disabled: !!this.busy, onclick: () => this.signIn(true) },
                  "Sign in here instead",
                )
              : null,
          ),
        );
        nodes.push(this.messages());
        WT.swap(root, nodes);
        return;
      }
      const snap = this.snap || { me: {}, incoming: [], agents: [] };
      const me = snap.me || {};
      // The state the server derived (lobby connection, calls, offers, wrap-up), never a local guess.
      const who = this.me || me; // a resumed session renders before its snapshot arrives
      const status = me.label || "Unavailable";
      nodes.push(
        el(
          "div",
          { class: "wt-deskhead" },
          el(
            "div",
            {},
            el("div", { class: "wt-title", dataset: { testid: "agent-name" } }, who.name || ""),
            el(
              "div",
              { class: "wt-small wt-muted" },
              who.identity || "",
              (me.queues || []).length ? ` · queues: ${me.queues.join(", ")}` : "",
            ),
          ),
          el(
            "span",
            { class: `wt-pill wt-avail-${AVAIL_CLASS[me.state] || "busy"}`, dataset: { testid: "availability", state: me.state || "" } },
            status,
          ),
          el(
            "button",
            { class: "wt-btn wt-toggle-available", onclick: () => this.setAvailable(!me.ready) },
            me.ready ? "Go unavailable" : "Go available",
          ),
          el("button", { class: "wt-btn wt-link", onclick: () => this.signOut() }, "Sign out"),
        ),
      );
      nodes.push(this.messages());
      if (snap.transfer_in && OPEN.has(snap.transfer_in.state)) nodes.push(this.incomingTransferCard(snap.transfer_in));
      if (snap.call) nodes.push(this.callCard(snap));
      if (!snap.call && !(snap.transfer_in && OPEN.has(snap.transfer_in.state))) nodes.push(this.incomingCalls(snap));
      WT.swap(root, nodes);
    }

    messages() {
      return el(
        "div",
        { class: "wt-messages" },
        this.busy
          ? el("div", { class: "wt-progress", dataset: { testid: "progress" } }, el("span", { class: "wt-spinner" }), this.busy)
          : null,
        this.error
          ? el(
              "div",
              { class: "wt-alert", role: "alert" },
              this.error,
              " ",
              el(
                "button",
                {
                  class: "wt-btn wt-link",
                  onclick: () => {
                    this.error = "";
                    this.render();
                  },
                },
                "Dismiss",
              ),
            )
          : null,
        this.notice ? el("div", { class: "wt-notice", dataset: { testid: "notice" } }, this.notice) : null,
      );
    }

    input(name, label, attrs) {
      const input = el("input", Object.assign({ name, class: "wt-input", value: this.form[name] || "" }, attrs || {}));
      input.addEventListener("input", () => {
        this.form[name] = input.value;
      });
      return el("label", { class: "wt-field" }, el("span", {}, label), input);
    }

    incomingCalls(snap) {
      const list = snap.incoming || [];
      const me = snap.me || {};
      return el(
        "section",
        { class: "wt-card wt-incoming" },
        el("h3", {}, "Incoming calls"),
        list.length
          ? el(
              "ul",
              { class: "wt-list" },
              list.map((c) =>
                el(
                  "li",
                  { class: "wt-incoming-call", dataset: { callId: c.call_id, ringing: c.offered_to ? "1" : "0" } },
                  el("span", { class: "wt-ring" }),
                  el(
                    "span",
                    { class: "wt-grow" },
                    el("b", {}, c.caller_name || "Caller"),
                    el(
                      "span",
                      { class: "wt-muted wt-small" },
                      ` · ${c.offered_to ? "ringing you" : "in the queue"} · waiting ${WT.ago(c.at)}`,
                    ),
                  ),
                  el("button", { class: "wt-btn wt-primary wt-accept-call", onclick: () => this.acceptCall(c.call_id) }, "Accept"),
                ),
              ),
            )
          : el(
              "div",
              { class: "wt-empty" },
              me.available ? "No calls waiting. Calls offered to you appear here." : "You're unavailable: go available to receive calls.",
            ),
      );
    }

    callCard(snap) {
      const call = snap.call;
      const out = snap.transfer_out && OPEN.has(snap.transfer_out.state) ? snap.transfer_out : null;
      const held = call.status === "on_hold";
      const card = el(
        "section",
        { class: "wt-card wt-current-call" },
        el("h3", {}, "Current call"),
        el(
          "div",
          { class: "wt-callline" },
          el("b", { dataset: { testid: "call-caller" } }, call.caller_name || "Caller"),
          el(
            "span",
            { class: `wt-pill wt-call-${call.status}` },
            held ? "Caller on hold" : call.status === "active" ? "Live" : call.status,
          ),
        ),
        el(
          "div",
          { class: "wt-controls" },
          !this.callRoom.connected && call.status === "active"
            ? el("button", { class: "wt-btn wt-primary", onclick: () => this.rejoinCall() }, "Join call audio")
            : null,
          el("button", { class: "wt-btn wt-danger wt-end-call", onclick: () => this.endCall(), disabled: !!out }, "End call"),
        ),
      );
      if (out) card.append(this.transferProgress(out));
      else if (call.status === "active") card.append(this.transferControls(snap));
      return card;
    }

    transferControls(snap) {
      const me = (snap.me || {}).identity;
      const targets = (snap.agents || []).filter((a) => a.available && a.identity !== me);
      // Queues (AGENT_SKILLS): offered to the agent idle longest; a decline or no answer goes to the next.
      const queues = (snap.queues || []).map((q) => ({ value: `queue:${q.name}`, label: `Queue: ${q.name} (${q.available} available)` }));
      const values = [...targets.map((a) => a.identity), ...queues.map((q) => q.value)];
      if (!values.includes(this.form.target)) this.form.target = values.length ? values[0] : "";
      const options = [
        ...targets.map((a) => el("option", { value: a.identity }, `${a.name} (${a.identity})`)),
        ...queues.map((q) => el("option", { value: q.value }, q.label)),
      ];
      const select = el(
        "select",
        { name: "target", class: "wt-input", "aria-label": "Transfer to agent or queue" },
        options.length ? options : el("option", { value: "" }, "No other agent is available"),
      );
      select.value = this.form.target;
      select.addEventListener("change", () => {
        this.form.target = select.value;
      });
      const phoneCaps = snap.phone || {};
      if (!phoneCaps.enabled) this.form.phone = "";
      const phone = el("input", {
        name: "phone",
        class: "wt-input",
        value: this.form.phone,
        placeholder: "+14155550123",
        inputmode: "tel",
        maxlength: 20,
        disabled: !phoneCaps.enabled,
      });
      phone.addEventListener("input", () => {
        this.form.phone = phone.value;
      });
      const hint = !phoneCaps.enabled ? PHONE_HINT.off : !phoneCaps.can_bridge ? PHONE_HINT.noSip : "";
      return el(
        "div",
        { class: "wt-transfer-controls" },
        el("h4", {}, "Warm transfer"),
        el(
          "div",
          { class: "wt-row" },
          el("label", { class: "wt-field wt-grow" }, el("span", {}, "To an available agent or a queue"), select),
          el("label", { class: "wt-field" }, el("span", {}, "or a phone number"), phone),
        ),
        hint ? el("p", { class: "wt-note", dataset: { testid: "phone-hint" } }, hint) : null,
        el(
          "button",
          { class: "wt-btn wt-primary wt-start-transfer", onclick: () => this.startTransfer(), disabled: !!this.busy },
          "Start warm transfer",
        ),
      );
    }

    transferProgress(t) {
      const summary = this.summaries[t.transfer_id] || t.summary;
      const byPhone = t.target_kind === "phone";
      const legText = L.legText(t.phone_leg);
      const consulting = t.state === "consulting";
      const says = L.transferSays(t);
      const to = t.queue ? `${t.queue} queue · ${t.target_name || t.target}` : t.target_name || t.target;
      return el(
        "div",
        { class: "wt-transfer-progress", dataset: { state: t.state } },
        el(
          "h4",
          {},
          `Warm transfer to ${to}`,
          " ",
          el("span", { class: `wt-pill wt-t-${t.state}`, dataset: { testid: "transfer-state" } }, L.stateLabel(t.state)),
        ),
        byPhone ? el("div", { class: "wt-small" }, "Phone: ", el("b", { dataset: { testid: "phone-leg" } }, legText || "Dialing")) : null,
        el("p", { class: "wt-small wt-muted" }, says),
        WT.summaryCard(summary, { testid: "transfer-summary", empty: "Preparing the summary…" }),
        this.qaList(t),
        t.state === "introducing"
          ? el(
              "div",
              { class: "wt-controls" },
              el(
                "button",
                { class: "wt-btn wt-primary wt-leave", onclick: () => this.transferAction("leave", t), disabled: !t.introduced },
                "Leave the call",
              ),
              el("button", { class: "wt-btn wt-danger wt-cancel", onclick: () => this.transferAction("cancel", t) }, "Cancel introduction"),
            )
          : el(
              "div",
              { class: "wt-controls" },
              // A phone target accepts with its keypad; only agents have Complete and Introduce.
              byPhone
                ? null
                : el(
                    "button",
                    { class: "wt-btn wt-primary wt-complete", onclick: () => this.transferAction("complete", t), disabled: !consulting },
                    "Complete transfer",
                  ),
              byPhone
                ? null
                : el(
                    "button",
                    {
                      class: "wt-btn wt-introduce",
                      onclick: () => this.transferAction("introduce", t),
                      disabled: !consulting,
                      title: "B joins you and the caller; you leave when you're done",
                    },
                    "Introduce (3-way)",
                  ),
              el(
                "button",
                { class: "wt-btn wt-danger wt-cancel", onclick: () => this.transferAction("cancel", t), disabled: !consulting },
                "Cancel transfer",
              ),
            ),
      );
    }

    incomingTransferCard(t) {
      const summary = this.summaries[t.transfer_id] || t.summary;
      const consulting = t.state === "consulting";
      if (!DECLINE_REASONS.includes(this.form.reason)) this.form.reason = DECLINE_REASONS[0];
      const reason = el(
        "select",
        { name: "decline-reason", class: "wt-input", "aria-label": "Reason for declining" },
        DECLINE_REASONS.map((r) => el("option", { value: r }, r)),
      );
      reason.value = this.form.reason;
      reason.addEventListener("change", () => {
        this.form.reason = reason.value;
      });
      return el(
        "section",
        { class: "wt-card wt-incoming-transfer", dataset: { state: t.state } },
        el("h3", {}, t.state === "introducing" ? "Introduction" : "Incoming transfer"),
        el(
          "div",
          { class: "wt-callline" },
          el(
            "span",
            {},
            "From ",
            el("b", {}, t.from_name || t.from_agent),
            t.queue ? ` via the ${t.queue} queue` : "",
            " · caller ",
            el("b", {}, t.caller_name || "unknown"),
          ),
          el("span", { class: `wt-pill wt-t-${t.state}` }, L.stateLabel(t.state)),
        ),
        WT.summaryCard(summary, { testid: "incoming-summary", empty: "The summary is on its way…" }),
        t.target_kind === "agent" && t.state === "consulting"
          ? el(
              "p",
              { class: "wt-small wt-muted" },
              "Ask the briefing by voice: \u201cBriefing, what\u2019s the account number?\u201d, or any question while nobody else speaks.",
            )
          : null,
        this.qaList(t),
        t.state === "introducing"
          ? el(
              "p",
              { class: "wt-small wt-muted" },
              t.introduced ? `You're with the caller and ${t.from_name || t.from_agent}; they'll leave shortly.` : "Joining the caller…",
            )
          : el(
              "div",
              { class: "wt-controls" },
              el(
                "button",
                { class: "wt-btn wt-primary wt-accept-transfer", onclick: () => this.transferAction("accept", t), disabled: !consulting },
                "Accept",
              ),
              el("label", { class: "wt-field wt-inline" }, el("span", { class: "wt-small" }, "Reason"), reason),
              el(
                "button",
                { class: "wt-btn wt-danger wt-decline-transfer", onclick: () => this.transferAction("decline", t), disabled: !consulting },
                "Decline",
              ),
            ),
      );
    }

    // B's questions to the briefing and its spoken answers, in order (text nodes only: they are speech).
    qaList(t) {
      const items = Object.values(this.qa[t.transfer_id] || {}).sort((a, b) => a.at - b.at);
      if (!items.length) return null;
      return el(
        "ol",
        { class: "wt-qa", dataset: { testid: "briefing-qa" } },
        items.map((q) =>
          el(
            "li",
            { class: "wt-qa-item", dataset: { found: q.found ? "1" : "0" } },
            el("div", { class: "wt-qa-q" }, el("span", { class: "wt-sum-k" }, "Q"), el("span", {}, q.question)),
            el(
              "div",
              { class: "wt-qa-a" },
              el("span", { class: "wt-sum-k" }, "A"),
              el("span", {}, q.answer),
              q.source && q.source !== "offline" ? el("span", { class: "wt-small wt-muted" }, ` · ${q.source}`) : null,
            ),
          ),
        ),
      );
    }

    renderLive() {
      const root = this.parts.live;
      if (!root) return;
      // Only the call this desk is on now: an ended call's summary and captions are not shown as live.
      const callId = this.currentCallId();
      const rolling = callId && this.rolling[callId];
      const focus = this.focusTid && this.transfers[this.focusTid];
      const transferSummary = callId && focus && focus.call_id === callId && this.summaries[this.focusTid];
      const captions = callId ? this.captions.filter((c) => c.call_id === callId).slice(-30) : [];
      const capList = el(
        "ol",
        { class: "wt-captions", dataset: { testid: "captions" } },
        captions.map((c) =>
          el(
            "li",
            {},
            el("span", { class: "wt-speaker" }, c.speaker === "caller" ? "Caller" : String(c.speaker || "").replace(/^agent:/, "")),
            el("span", {}, c.text),
          ),
        ),
      );
      WT.swap(root, [
        el(
          "section",
          { class: "wt-card" },
          el(
            "h3",
            {},
            "Summary",
            el("span", { class: "wt-muted wt-small" }, rolling ? " · rolling, live" : transferSummary ? " · transfer brief" : ""),
          ),
          WT.summaryCard(rolling || transferSummary, {
            testid: "live-summary",
            empty: "The rolling summary appears here while live transcription runs.",
          }),
        ),
        el(
          "section",
          { class: "wt-card" },
          el("h3", {}, "Live captions"),
          this.lagNotice(callId),
          captions.length ? capList : el("div", { class: "wt-empty" }, "Captions appear here while live transcription runs on the call."),
        ),
      ]);
      capList.scrollTop = capList.scrollHeight;
    }

    // What the worker said about its backlog: behind (more than 3 s) and what it dropped.
    lagNotice(callId) {
      const text = L.lagText(callId && this.captionLag[callId]);
      return text ? el("div", { class: "wt-notice", role: "status", dataset: { testid: "caption-lag" } }, text) : null;
    }

    renderTimeline() {
      const root = this.parts.timeline;
      if (!root) return;
      // The current call's events, or the last call's until the next one starts (marked as over).
      const current = this.currentCallId();
      const shown = current || this.lastCallId;
      const focus = this.focusTid && this.transfers[this.focusTid];
      const t = focus && focus.call_id === shown ? focus : null;
      const items = L.timelineItems(this.callLog, shown, t, t && this.events[t.transfer_id]);
      WT.swap(root, [
        el(
          "section",
          { class: "wt-card" },
          el(
            "h3",
            {},
            "Call timeline",
            shown && !current
              ? el("span", { class: "wt-muted wt-small", dataset: { testid: "timeline-over" } }, " · last call, over")
              : null,
            t ? el("span", { class: "wt-muted wt-small" }, ` · transfer ${t.transfer_id}`) : null,
          ),
          items.length
            ? el(
                "ol",
                { class: "wt-timeline", dataset: { testid: "timeline" } },
                items.map((i) => el("li", { dataset: { kind: i.kind } }, el("time", {}, WT.time(i.at)), el("span", {}, i.text))),
              )
            : el("div", { class: "wt-empty" }, "Events of the call and its transfers appear here with their times."),
        ),
      ]);
    }
  }

  const desks = {};
  const factory = function (slot, props) {
    if (!desks[slot]) desks[slot] = new AgentDesk(slot, props || {});
    const desk = desks[slot];
    if (props && props.wt_identity && !desk.session && desk.form.identity === desk.defaults.identity) {
      desk.defaults = { identity: props.wt_identity, name: props.wt_name || props.wt_identity };
      desk.form.identity = desk.defaults.identity;
      desk.form.name = desk.defaults.name;
    }
    return desk;
  };
  WT.desk = factory;
  WT.kinds.desk = factory;
  WT.kinds.live = factory;
  WT.kinds.timeline = factory;
})();
