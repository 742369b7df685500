// The reusable LiveKit room widget (connection state, participants with speaking indicators,
// mute/unmute, leave, remote audio, reconnects, microphone errors), and the page's rooms: one page
// may play several roles (Agent A, Agent B, the Caller), and this file decides which has the mic.
//
// livekit-client is imported as the ES module build npm ships (dist/livekit-client.esm.mjs, served
// by ui/__init__.py as wt-static/vendor/livekit-client.esm.mjs), not the UMD build and its global.
import * as LK from "./vendor/livekit-client.esm.mjs";
import { PROTOCOL } from "./protocol.js"; // generated from functions/events.py
import * as L from "./desk_logic.js"; // the page's pure decisions (tested by tests/js/)
import { el, emit } from "./dom.js";

const TOPIC = PROTOCOL.TOPIC;

// --- the room widget ------------------------------------------------------------------
const STATE_TEXT = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  disconnected: "Disconnected",
};

const HELD_NOTE = "On hold: the caller can't hear you and you can't hear them while you consult.";

// --- one page, several roles ------------------------------------------------------------
// One person may play Agent A, Agent B and the Caller in one page (the tabs). One microphone
// must not speak for all of them at once, and no role may play back another role of the same
// page (it is the same person: an echo). So, while more than one role is in a room:
// - only the role of the visible tab publishes the microphone (the Calls tab keeps the role
//   shown last); the others are muted and say so;
// - a room never plays back a participant this page is itself (any number of roles).
const ROLE_TABS = { "tab-agent-a-button": "a", "tab-agent-b-button": "b", "tab-caller-button": "caller" };
export const ROLE_NAMES = { a: "Agent A", b: "Agent B", caller: "Caller" };
// The page's rooms by slot (the desks' lobby, call and consult rooms; the caller's room).
export const rooms = {};
// role: the role whose tab was shown last; resuming: roles the page is bringing back after a
// reload (they count as played from the start, so no other role speaks for them meanwhile).
export const page = { role: null, resuming: new Set() };

function visibleRole() {
  const tab = document.querySelector('[role="tab"][aria-selected="true"]');
  return tab && ROLE_TABS[tab.id] ? ROLE_TABS[tab.id] : null; // Calls (or no tab bar): no role
}

// Roles of this page that are in (or joining) a room with a microphone, or coming back after a reload.
export function liveRoles() {
  const roles = new Set(page.resuming);
  for (const r of Object.values(rooms)) if (r.room && r.publish) roles.add(r.role);
  return roles;
}
// The role that has the microphone, or null when this page plays at most one role (it keeps it);
// "" while the tab bar is not there yet: then nobody speaks.
export function micRole() {
  const live = liveRoles().size;
  if (live > 1 && !page.role) page.role = visibleRole();
  return L.micHolder(live, page.role);
}
export function resuming(role, on) {
  if (on) page.resuming.add(role);
  else if (page.resuming.delete(role)) pageChanged();
}
export function pageIdentities() {
  const ids = new Set();
  for (const r of Object.values(rooms)) if (r.room && r.identity) ids.add(r.identity);
  return ids;
}
function micElsewhereText(role) {
  const holder = ROLE_NAMES[page.role];
  return `Microphone off: this page plays more than one role, and the microphone follows the visible tab${holder ? ` (now ${holder})` : ""}. Open the ${ROLE_NAMES[role] || role} tab to talk here.`;
}

// Any room joined or left, or another tab shown: re-decide microphones and playback (once per tick).
let pending = false;
function pageChanged() {
  if (pending) return;
  pending = true;
  queueMicrotask(() => {
    pending = false;
    for (const r of Object.values(rooms)) {
      r.syncPlayback();
      r.syncMic();
    }
    emit("page-roles", { live: Array.from(liveRoles()), mic: micRole() });
  });
}
function followTabs() {
  const role = visibleRole();
  if (role && role !== page.role) {
    page.role = role;
    pageChanged();
  }
}
document.addEventListener("click", () => setTimeout(followTabs, 0), true);
document.addEventListener("keyup", () => setTimeout(followTabs, 0), true);
setInterval(followTabs, 500); // a tab changed some other way (Gradio's own selection on load)

class Room extends EventTarget {
  constructor(slot, props) {
    super();
    this.slot = slot;
    this.label = (props && props.wt_label) || "Room";
    this.hint = (props && props.wt_hint) || "";
    this.room = null;
    this.state = "idle";
    this.note = ""; // one line under the state: why disconnected, hold, …
    this.micError = ""; // microphone failure, with a Retry button
    this.wantMic = true; // the user's mute choice survives holds and reconnects
    this.publish = true;
    this.held = false; // the server revoked our publish/subscribe (hold)
    this.needsAudioClick = false;
    this.tokenProvider = null;
    this.roomName = "";
    this.element = null;
    this.role = String(slot).split("-")[0]; // "a", "b" or "caller": the tab this room belongs to
    this.identity = ""; // who this page is in the room (from the token, known before joining)
    this._withheld = new Set(); // track sids not played back: a participant this page plays itself
    this._micChain = Promise.resolve();
    this._retries = 0;
    this._leaving = false;
  }

  mount(element) {
    this.element = element;
    element.classList.add("wt-roomw");
    this.render();
    return this;
  }

  get connected() {
    return this.state === "connected" || this.state === "reconnecting";
  }
  get micEnabled() {
    return !!(this.room && this.room.localParticipant && this.room.localParticipant.isMicrophoneEnabled);
  }

  // info: {url, token, room}; opts: {publish, tokenProvider: async () => info}
  async connect(info, opts) {
    opts = opts || {};
    if (this.room) await this.disconnect(true);
    this.publish = opts.publish !== false;
    this.tokenProvider = opts.tokenProvider || null;
    this.roomName = info.room || "";
    this.identity = info.identity || "";
    this.wantMic = this.publish;
    this.micError = "";
    this.note = "";
    this.held = false;
    this._retries = 0;
    this._leaving = false;
    return this._open(info);
  }

  async _open(info) {
    const room = new LK.Room({ adaptiveStream: false, dynacast: false, disconnectOnPageLeave: true });
    this.room = room;
    this._wire(room);
    this._setState("connecting");
    try {
      await room.connect(info.url, info.token, { autoSubscribe: true });
    } catch (e) {
      if (this.room !== room) return false;
      this.room = null;
      this._setState("disconnected", `Could not connect: ${(e && e.message) || e}`);
      this._emit("failed", { error: String((e && e.message) || e) });
      return false;
    }
    if (this.room !== room) return false;
    this._retries = 0;
    this.identity = room.localParticipant.identity || this.identity;
    // Joined with a token that may not publish or subscribe (A back in its call room during the
    // hold, after a reload): on hold from the start, the microphone comes when the hold ends.
    const perm = room.localParticipant.permissions;
    if (this.publish && perm && (!perm.canPublish || !perm.canSubscribe)) {
      this.held = true;
      this.note = HELD_NOTE;
    }
    this._setState("connected");
    if (this.publish) await this.syncMic();
    this.needsAudioClick = !room.canPlaybackAudio;
    this.render();
    this._emit("connected", {});
    return true;
  }

  _wire(room) {
    const E = LK.RoomEvent;
    const mine = () => this.room === room;
    room.on(E.ConnectionStateChanged, (s) => {
      if (!mine()) return;
      if (s === "reconnecting" || s === "signalReconnecting") this._setState("reconnecting", "Network trouble — reconnecting…");
      else if (s === "connected" && this.state === "reconnecting") this._setState("connected", "Reconnected.");
    });
    room.on(E.Disconnected, (reason) => {
      if (mine()) this._onDisconnected(reason);
    });
    for (const ev of [
      E.ParticipantConnected,
      E.ParticipantDisconnected,
      E.ActiveSpeakersChanged,
      E.TrackMuted,
      E.TrackUnmuted,
      E.LocalTrackPublished,
      E.LocalTrackUnpublished,
      E.TrackPublished,
      E.TrackUnpublished,
      E.ParticipantNameChanged,
    ]) {
      room.on(ev, () => {
        if (mine()) {
          this.render();
          this._emit("participants", {});
        }
      });
    }
    room.on(E.TrackSubscribed, (track, pub, participant) => {
      if (!mine() || track.kind !== "audio") return;
      if (pageIdentities().has(participant.identity)) {
        // This page is that participant too (it plays several roles): playing it back is an echo.
        this._withheld.add(pub.trackSid);
        pub.setSubscribed(false);
        this.render();
        return;
      }
      const audio = track.attach();
      audio.dataset.wtAudio = "1";
      audio.dataset.identity = participant.identity;
      this._audioBox().append(audio);
      this.render();
    });
    room.on(E.TrackUnsubscribed, (track) => {
      track.detach().forEach((a) => a.remove());
      if (mine()) this.render();
    });
    room.on(E.AudioPlaybackStatusChanged, () => {
      if (!mine()) return;
      this.needsAudioClick = !room.canPlaybackAudio;
      this.render();
    });
    room.on(E.ParticipantPermissionsChanged, (prev, participant) => {
      if (!mine() || !participant || participant !== room.localParticipant) return;
      this._onPermissions(participant.permissions);
    });
    room.on(E.DataReceived, (payload, participant, kind, topic) => {
      if (!mine() || topic !== TOPIC) return;
      let msg;
      try {
        msg = JSON.parse(new TextDecoder().decode(payload));
      } catch {
        return;
      }
      if (!msg || typeof msg.type !== "string") return;
      this._emit("data", { msg, from: participant ? participant.identity : null });
    });
  }

  async _onPermissions(perm) {
    const canPublish = !!(perm && perm.canPublish);
    const canSubscribe = !!(perm && perm.canSubscribe);
    if (!this.publish) return;
    if (!canPublish || !canSubscribe) {
      this.held = true;
      this.note = HELD_NOTE;
    } else if (this.held) {
      this.held = false;
      this.note = "You're back on the call.";
      // The server unpublished our microphone during the hold: publish it again (if it is ours to use).
      await this.syncMic();
    }
    this.render();
    this._emit("permissions", { canPublish, canSubscribe });
  }

  async _onDisconnected(reason) {
    const room = this.room;
    this.room = null;
    this._audioBox().replaceChildren();
    if (room) room.removeAllListeners();
    this._withheld.clear();
    pageChanged();
    let { why, final } = L.disconnectWhy(reason, LK.DisconnectReason, this._leaving);
    if (!final && this.tokenProvider && this._retries < 3) {
      // Lost the connection for good (LiveKit's own reconnects gave up): rejoin with a fresh token.
      this._retries += 1;
      this._setState("reconnecting", `Connection lost — rejoining (attempt ${this._retries} of 3)…`);
      await new Promise((r) => setTimeout(r, 600 * this._retries));
      const info = await this.tokenProvider();
      if (info && !info.error && !this._leaving) {
        const ok = await this._open(info);
        if (ok) return;
      } else if (info && info.error) {
        why = info.error;
      }
    }
    if (!final && why === "Disconnected.") why = "The connection was lost.";
    this._setState("disconnected", why);
    this._emit("disconnected", { reason, why, final });
  }

  async enableMic() {
    if (!this.room || !this.publish) return false;
    try {
      await this.room.localParticipant.setMicrophoneEnabled(true);
      this.micError = "";
      this.wantMic = true;
      this.render();
      return true;
    } catch (e) {
      const failure = LK.MediaDeviceFailure ? LK.MediaDeviceFailure.getFailure(e) : null;
      if (failure === "PermissionDenied" || (e && e.name === "NotAllowedError")) {
        this.micError =
          "Microphone blocked. Allow microphone access for this site (the icon in the address bar), then press Retry microphone. You can still hear the call.";
      } else if (failure === "NotFound") {
        this.micError = "No microphone found. Plug one in, then press Retry microphone.";
      } else if (failure === "DeviceInUse") {
        this.micError = "The microphone is in use by another application. Close it, then press Retry microphone.";
      } else if (this.held) {
        return false; // no permission to publish while on hold: not a device problem
      } else {
        this.micError = `The microphone could not start: ${(e && e.message) || e}`;
      }
      this.render();
      this._emit("mic-error", { message: this.micError });
      return false;
    }
  }

  async setMuted(muted) {
    if (!this.room) return;
    this.wantMic = !muted;
    await this.syncMic();
  }

  // Whether this room's role may use the page's microphone (see "One page, several roles").
  get micAllowed() {
    return L.micAllowed(micRole(), this.role);
  }

  // Publish the microphone exactly when the user wants it, the server allows it and the page's
  // microphone is this role's; one change at a time.
  syncMic() {
    this._micChain = this._micChain
      .then(async () => {
        const room = this.room;
        if (!room || !this.publish || this.state !== "connected") return;
        const want = this.wantMic && !this.held && this.micAllowed;
        if (want && !this.micEnabled && !this.micError)
          await this.enableMic(); // a failed device waits for Retry
        else if (!want && this.micEnabled) await room.localParticipant.setMicrophoneEnabled(false).catch(() => {});
        this.render();
      })
      .catch(() => {});
    return this._micChain;
  }

  // Play back everyone in the room except participants this page is itself (see TrackSubscribed).
  syncPlayback() {
    const room = this.room;
    if (!room) return;
    const ours = pageIdentities();
    for (const p of room.remoteParticipants.values()) {
      for (const pub of p.audioTrackPublications.values()) {
        if (ours.has(p.identity) && pub.isSubscribed) {
          this._withheld.add(pub.trackSid);
          pub.setSubscribed(false);
        } else if (!ours.has(p.identity) && this._withheld.has(pub.trackSid)) {
          this._withheld.delete(pub.trackSid);
          pub.setSubscribed(true);
        }
      }
    }
    this.render();
  }

  async toggleMute() {
    return this.setMuted(this.micEnabled);
  }

  async disconnect(quiet) {
    this._leaving = true;
    const room = this.room;
    if (room) {
      await room.disconnect();
      if (this.room === room) this._onDisconnected(LK.DisconnectReason && LK.DisconnectReason.CLIENT_INITIATED);
    }
    if (quiet) {
      this.state = "idle";
      this.note = "";
      this.render();
    }
  }

  async leave() {
    await this.disconnect(false);
    this._emit("left", {});
  }

  participants() {
    const room = this.room;
    if (!room) return [];
    const lp = room.localParticipant;
    const out = [
      { identity: lp.identity, name: lp.name || lp.identity, local: true, speaking: lp.isSpeaking, micOn: lp.isMicrophoneEnabled },
    ];
    for (const p of room.remoteParticipants.values()) {
      const pubs = Array.from(p.audioTrackPublications ? p.audioTrackPublications.values() : []);
      const micOn = pubs.some((pub) => !pub.isMuted);
      out.push({
        identity: p.identity,
        name: p.name || p.identity,
        local: false,
        // The server does not always say "stopped speaking" for a track it takes out (the media jobs
        // unpublish theirs when they stop playing): without an open track, nobody is speaking.
        speaking: p.isSpeaking && micOn,
        micOn,
        withheld: pageIdentities().has(p.identity),
      });
    }
    return out;
  }

  nameOf(identity) {
    if (!this.room || !identity) return "";
    if (this.room.localParticipant.identity === identity) return this.room.localParticipant.name || identity;
    const p = this.room.remoteParticipants.get(identity);
    return p ? p.name || identity : "";
  }

  _audioBox() {
    if (!this._audio) {
      this._audio = document.createElement("div");
      this._audio.className = "wt-audio";
      this._audio.hidden = true;
      document.body.append(this._audio);
    }
    return this._audio;
  }

  _setState(state, note) {
    this.state = state;
    if (note !== undefined) this.note = note;
    this.render();
    this._emit("state", { state });
    pageChanged();
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  render() {
    const root = this.element;
    if (!root) return;
    const stateKey = this.held && this.state === "connected" ? "held" : this.state;
    const stateText = stateKey === "held" ? "On hold" : STATE_TEXT[this.state] || this.state;
    root.dataset.state = stateKey;
    const people = this.participants();
    const list = el(
      "ul",
      { class: "wt-people" },
      people.map((p) =>
        el(
          "li",
          {
            class: `wt-person${p.speaking ? " speaking" : ""}${p.local ? " local" : ""}`,
            dataset: { identity: p.identity, speaking: p.speaking ? "1" : "0", played: p.local || p.withheld ? "0" : "1" },
          },
          el("span", { class: "wt-dot", title: p.speaking ? "speaking" : "" }),
          el("span", { class: "wt-name" }, p.local ? `${p.name} (you)` : p.name),
          p.withheld ? el("span", { class: "wt-small wt-muted", dataset: { testid: "withheld" } }, "this page: not played") : null,
          el("span", { class: "wt-mic" }, p.micOn ? "" : "muted"),
        ),
      ),
    );
    const controls = el("div", { class: "wt-controls" });
    const elsewhere = this.connected && this.publish && !this.micAllowed;
    if (this.connected && this.publish) {
      controls.append(
        el(
          "button",
          { class: "wt-btn wt-mute", onclick: () => this.toggleMute(), disabled: this.held || elsewhere },
          this.micEnabled ? "Mute" : "Unmute",
        ),
      );
    }
    if (this.micError && this.connected) {
      controls.append(
        el(
          "button",
          {
            class: "wt-btn wt-retry-mic",
            onclick: () => {
              this.micError = "";
              this.wantMic = true;
              this.syncMic();
            },
          },
          "Retry microphone",
        ),
      );
    }
    if (this.needsAudioClick && this.connected) {
      controls.append(el("button", { class: "wt-btn wt-primary", onclick: () => this.room && this.room.startAudio() }, "Enable audio"));
    }
    if (this.connected) {
      controls.append(el("button", { class: "wt-btn wt-danger wt-leave", onclick: () => this.leave() }, "Leave"));
    }
    root.replaceChildren(
      ...[
        el(
          "div",
          { class: "wt-room-head" },
          el("span", { class: "wt-room-label" }, this.label),
          el("span", { class: `wt-pill wt-state-${stateKey}`, dataset: { testid: "room-state" } }, stateText),
        ),
        this.micError ? el("div", { class: "wt-alert wt-mic-error", role: "alert" }, this.micError) : null,
        this.note ? el("div", { class: "wt-note" }, this.note) : null,
        elsewhere
          ? el("div", { class: "wt-note wt-mic-elsewhere", dataset: { testid: "mic-elsewhere" } }, micElsewhereText(this.role))
          : null,
        people.length ? list : el("div", { class: "wt-empty" }, this.hint || "Not in a room."),
        controls.childNodes.length ? controls : null,
      ].filter(Boolean),
    );
  }
}

export function room(slot, props) {
  let r = rooms[slot];
  if (!r) r = rooms[slot] = new Room(slot, props);
  else if (props) {
    r.label = props.wt_label || r.label;
    r.hint = props.wt_hint || r.hint;
  }
  return r;
}
