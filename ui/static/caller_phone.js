// Caller tab: name, agent pick, one-click call; who you're talking to, hold, the
// transfer, mute and hang up. The caller's only credential is the ticket of its call.
import { PROTOCOL as P } from "./protocol.js"; // the message types, generated from functions/events.py
import * as L from "./desk_logic.js"; // what the caller is shown (tested by tests/js/)
import { bus, call, el } from "./dom.js";
import { room } from "./livekit_room.js";
import { SavedSession } from "./session.js";

class CallerPhone {
  constructor(slot) {
    this.slot = slot;
    this.server = null;
    this.root = null;
    this.agents = [];
    this.call = null; // {call_id, identity, ticket}
    this.view = null; // {status, agent, agent_name, ringing, ringing_name}
    this.firstAgent = null; // the agent who answered first (to say "Now connected to" after a transfer)
    this.wasOnHold = false;
    this.busy = "";
    this.error = "";
    this.name = "";
    this.pick = "";
    this.saved = SavedSession.call(slot); // this tab's ticket, kept across a reload
    this.room = room(slot, null);
    this.room.addEventListener("data", (e) => this.onData(e.detail.msg));
    this.room.addEventListener("disconnected", (e) => this.onRoomGone(e.detail));
    this.room.addEventListener("left", () => this.hangUp());
    this.room.addEventListener("connected", () => this.refreshStatus());
    // The agent list while no call is up; while waiting, the place in the queue (pushed as `call.queue`
    // too: this is only the safety net).
    this._poll = setInterval(() => {
      if (!this.call) this.loadAgents();
      else if ((this.view || {}).status === "waiting") this.refreshStatus();
    }, 4000);
  }

  attachPart(_kind, root, server) {
    this.root = root;
    this.server = this.server || server;
    root.classList.add("wt-caller");
    this.loadAgents();
    this.render();
    this.resume();
  }

  // The page's boot (outside the tabs) resumes a saved call before the Caller tab is ever shown:
  // Gradio mounts a tab's components only when the tab is first opened.
  adopt(server) {
    this.server = this.server || server;
    return this.resume();
  }

  // One resume at a time (the caller panel and the page panel both ask); done once back in the room.
  resume() {
    return this.saved.resumeOnce(() => this._resume());
  }

  save() {
    this.saved.store(this.call);
  }

  async _resume() {
    const saved = this.saved.load();
    if (this.call || !saved || !this.server) return;
    const view = await call(this.server, "caller_status", saved);
    if (view.error || view.status === "ended") {
      this.call = null;
      this.save();
      return;
    }
    this.call = saved;
    this.view = view;
    this.render();
    const tok = await call(this.server, "caller_token", saved);
    if (tok.error) {
      this.error = tok.error;
      this.render();
      return;
    }
    await this.connectRoom(tok.token);
  }

  async connectRoom(token) {
    await this.room.connect(token, {
      publish: true,
      tokenProvider: async () => {
        const t = await call(this.server, "caller_token", this.creds());
        return t.error ? t : t.token;
      },
    });
    this.render();
  }

  async loadAgents() {
    if (!this.server) return;
    const out = await call(this.server, "caller_agents", {});
    if (out.error) return;
    const before = JSON.stringify(this.agents);
    this.agents = out.agents || [];
    if (before !== JSON.stringify(this.agents) && !this.call) this.render();
  }

  creds() {
    return this.call ? { call_id: this.call.call_id, identity: this.call.identity, ticket: this.call.ticket } : {};
  }

  async start() {
    const nameInput = this.root.querySelector("input[name=caller-name]");
    const select = this.root.querySelector("select[name=agent]");
    this.name = nameInput ? nameInput.value.trim() : "";
    this.pick = select ? select.value : "";
    this.busy = "Connecting your call…";
    this.error = "";
    this.render();
    const out = await call(this.server, "caller_start", { name: this.name, agent: this.pick });
    if (out.error) {
      this.busy = "";
      this.error = out.error;
      this.render();
      return;
    }
    this.call = { call_id: out.call_id, identity: out.identity, ticket: out.ticket };
    this.save();
    this.view = out;
    this.firstAgent = null;
    this.wasOnHold = false;
    this.busy = "";
    this.render();
    await this.connectRoom(out.token);
  }

  onData(msg) {
    if (!this.call || !msg.payload || msg.payload.call_id !== this.call.call_id) return;
    if (msg.type === P.CALL_STATUS) {
      // Until the server's view arrives, "transferred"/"back" are this page's own guess.
      this.applyStatus({ status: msg.payload.status, agent: msg.payload.agent, transferred: undefined, back: undefined });
      this.refreshStatus(); // names, what the caller is told, whether the call was transferred: from the server
    } else if (msg.type === P.CALL_QUEUE) {
      this.refreshStatus(); // who it rings now, the place in the queue
    }
  }

  async refreshStatus() {
    if (!this.call) return;
    const out = await call(this.server, "caller_status", this.creds());
    if (!out.error) this.applyStatus(out);
  }

  applyStatus(view) {
    const prev = this.view || {};
    this.view = Object.assign({}, prev, view);
    if (view.agent && view.agent !== prev.agent && !("agent_name" in view)) this.view.agent_name = "";
    if (this.view.status === "active" && !this.firstAgent) this.firstAgent = this.view.agent;
    if (this.view.status === "on_hold") this.wasOnHold = true;
    this.render();
  }

  async hangUp() {
    if (!this.call) return;
    this.busy = "Hanging up…";
    this.render();
    const out = await call(this.server, "caller_hangup", this.creds());
    this.busy = "";
    if (!out.error) this.view = Object.assign({}, this.view, out);
    else this.view = Object.assign({}, this.view, { status: "ended" });
    await this.room.disconnect(true);
    this.render();
  }

  onRoomGone(detail) {
    if (!this.call) return;
    if (detail && detail.final) this.view = Object.assign({}, this.view, { status: "ended" });
    this.render();
  }

  reset() {
    this.call = null;
    this.save();
    this.view = null;
    this.error = "";
    this.room.disconnect(true);
    this.loadAgents();
    this.render();
  }

  agentName() {
    const v = this.view || {};
    return v.agent_name || this.room.nameOf(v.agent) || v.agent || "an agent";
  }

  headline() {
    return L.callerHeadline(this.view, { agentName: this.agentName(), wasOnHold: this.wasOnHold, firstAgent: this.firstAgent });
  }

  // While waiting: the place in the queue and an estimated wait (from the server's call queue).
  queueLine() {
    const text = L.queueText(this.view);
    return text ? el("div", { class: "wt-callcard-sub wt-queue", dataset: { testid: "caller-queue" } }, text) : null;
  }

  // In the form, only the agent list changes: update it in place, so typing isn't disturbed.
  updateAgentList() {
    const select = this.root.querySelector("select[name=agent]");
    const count = this.root.querySelector(".wt-agent-count");
    if (!select || !count) return false;
    const current = select.value;
    select.replaceChildren(
      el("option", { value: "" }, "First available agent"),
      ...this.agents.map((a) => el("option", { value: a.identity }, a.name)),
    );
    select.value = this.agents.some((a) => a.identity === current) ? current : "";
    count.textContent = this.countText();
    const button = this.root.querySelector(".wt-call-btn");
    if (button) button.disabled = !!this.busy;
    return true;
  }

  countText() {
    return L.agentCountText(this.agents.length);
  }

  render() {
    const root = this.root;
    if (!root) return;
    if (!this.call && this.updateAgentList()) {
      root.querySelectorAll(".wt-progress, .wt-alert").forEach((n) => n.remove());
      if (this.busy) root.append(el("div", { class: "wt-progress" }, el("span", { class: "wt-spinner" }), this.busy));
      if (this.error) root.append(el("div", { class: "wt-alert", role: "alert" }, this.error));
      return;
    }
    const parts = [el("h2", { class: "wt-title" }, "Call support")];
    if (!this.call) {
      const select = el(
        "select",
        { name: "agent", class: "wt-input", "aria-label": "Agent" },
        el("option", { value: "" }, "First available agent"),
        this.agents.map((a) => el("option", { value: a.identity }, a.name)),
      );
      select.value = this.agents.some((a) => a.identity === this.pick) ? this.pick : "";
      parts.push(
        el("p", { class: "wt-muted" }, "No account needed: tell us your name and press Call."),
        el(
          "form",
          {
            class: "wt-form",
            onsubmit: (e) => {
              e.preventDefault();
              this.start();
            },
          },
          el(
            "label",
            { class: "wt-field" },
            el("span", {}, "Your name"),
            el("input", {
              name: "caller-name",
              class: "wt-input",
              maxlength: 80,
              autocomplete: "name",
              value: this.name,
              placeholder: "e.g. Maria Lopez",
            }),
          ),
          el("label", { class: "wt-field" }, el("span", {}, "Talk to"), select),
          el("p", { class: "wt-muted wt-small wt-agent-count" }, this.countText()),
          el("button", { type: "submit", class: "wt-btn wt-primary wt-big wt-call-btn", disabled: !!this.busy }, "Call"),
        ),
      );
    } else {
      const [head, sub] = this.headline();
      const status = (this.view && this.view.status) || "waiting";
      parts.push(
        el(
          "div",
          { class: `wt-callcard wt-status-${status}` },
          el("div", { class: "wt-callcard-head", dataset: { testid: "caller-headline" } }, head),
          sub ? el("div", { class: "wt-callcard-sub", dataset: { testid: "caller-sub" } }, sub) : null,
          this.queueLine(),
          status === "on_hold" ? el("div", { class: "wt-holdbars", "aria-hidden": "true" }, el("i"), el("i"), el("i"), el("i")) : null,
        ),
      );
      const controls = el("div", { class: "wt-controls" });
      if (status !== "ended") {
        if (this.room.connected) {
          controls.append(
            el(
              "button",
              { class: "wt-btn wt-mute", onclick: () => this.room.toggleMute(), disabled: !this.room.micAllowed },
              this.room.micEnabled ? "Mute" : "Unmute",
            ),
          );
        }
        controls.append(
          el("button", { class: "wt-btn wt-danger wt-hangup", onclick: () => this.hangUp(), disabled: !!this.busy }, "Hang up"),
        );
      } else {
        controls.append(el("button", { class: "wt-btn wt-primary", onclick: () => this.reset() }, "Call again"));
      }
      parts.push(controls);
      if (this.room.micError) parts.push(el("div", { class: "wt-alert", role: "alert" }, this.room.micError));
    }
    if (this.busy) parts.push(el("div", { class: "wt-progress" }, el("span", { class: "wt-spinner" }), this.busy));
    if (this.error) parts.push(el("div", { class: "wt-alert", role: "alert" }, this.error));
    root.replaceChildren(...parts.filter(Boolean));
  }
}

const phones = {};
export function phone(slot) {
  if (!phones[slot]) {
    phones[slot] = new CallerPhone(slot);
    // Re-draw the mute label when the room widget changes, or the microphone moves to another tab.
    room(slot).addEventListener("state", () => phones[slot].render());
    room(slot).addEventListener("participants", () => phones[slot].render());
    bus.addEventListener("page-roles", () => phones[slot].render());
  }
  return phones[slot];
}
