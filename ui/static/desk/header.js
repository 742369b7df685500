// The top of the desk: the sign-in form (signed out), the agent's name with its availability and
// the Sign out button (signed in), and the messages under them (progress, error, notice).
import { el } from "../dom.js";

const AVAIL_CLASS = { available: "on", away: "off", offline: "off" };

// --- sign-in form ----------------------------------------------------------------------------
export function signInInputs(desk) {
  const { identity, name, passcode } = desk.form;
  return { identity, name, passcode, busy: !!desk.busy, elsewhere: !!desk.elsewhere };
}

export function drawSignIn(d, desk) {
  const input = (name, label, attrs) => {
    const node = el("input", Object.assign({ name, class: "wt-input", value: d[name] || "" }, attrs || {}));
    node.addEventListener("input", () => {
      desk.form[name] = node.value;
    });
    return el("label", { class: "wt-field" }, el("span", {}, label), node);
  };
  return [
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
          desk.signIn();
        },
      },
      input("identity", "Agent ID", { autocomplete: "username", maxlength: 64 }),
      input("name", "Display name", { maxlength: 80 }),
      input("passcode", "Passcode", {
        type: "password",
        autocomplete: "current-password",
        placeholder: "Not needed in local mode",
      }),
      el("button", { type: "submit", class: "wt-btn wt-primary wt-signin", disabled: d.busy }, "Sign in"),
      d.elsewhere
        ? el(
            "button",
            { type: "button", class: "wt-btn wt-signin-here", disabled: d.busy, onclick: () => desk.signIn(true) },
            "Sign in here instead",
          )
        : null,
    ),
  ];
}

// --- the signed-in agent ---------------------------------------------------------------------
// The state the server derived (lobby connection, calls, offers, wrap-up), never a local guess.
export function headInputs(desk) {
  const me = (desk.snap && desk.snap.me) || {};
  const who = desk.me || me; // a resumed session renders before its snapshot arrives
  return {
    name: who.name || "",
    identity: who.identity || "",
    queues: me.queues || [],
    state: me.state || "",
    label: me.label || "Unavailable",
    ready: !!me.ready,
  };
}

export function drawHead(d, desk) {
  return el(
    "div",
    { class: "wt-deskhead" },
    el(
      "div",
      {},
      el("div", { class: "wt-title", dataset: { testid: "agent-name" } }, d.name),
      el("div", { class: "wt-small wt-muted" }, d.identity, d.queues.length ? ` · queues: ${d.queues.join(", ")}` : ""),
    ),
    el(
      "span",
      { class: `wt-pill wt-avail-${AVAIL_CLASS[d.state] || "busy"}`, dataset: { testid: "availability", state: d.state } },
      d.label,
    ),
    el(
      "button",
      { class: "wt-btn wt-toggle-available", onclick: () => desk.setAvailable(!d.ready) },
      d.ready ? "Go unavailable" : "Go available",
    ),
    el("button", { class: "wt-btn wt-link", onclick: () => desk.signOut() }, "Sign out"),
  );
}

// --- progress, error, notice -----------------------------------------------------------------
export function messagesInputs(desk) {
  return { busy: desk.busy || "", error: desk.error || "", notice: desk.notice || "" };
}

export function drawMessages(d, desk) {
  return el(
    "div",
    { class: "wt-messages" },
    d.busy ? el("div", { class: "wt-progress", dataset: { testid: "progress" } }, el("span", { class: "wt-spinner" }), d.busy) : null,
    d.error
      ? el(
          "div",
          { class: "wt-alert", role: "alert" },
          d.error,
          " ",
          el(
            "button",
            {
              class: "wt-btn wt-link",
              onclick: () => {
                desk.error = "";
                desk.render();
              },
            },
            "Dismiss",
          ),
        )
      : null,
    d.notice ? el("div", { class: "wt-notice", dataset: { testid: "notice" } }, d.notice) : null,
  );
}
