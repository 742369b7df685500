// The calls waiting for this agent (offered to it, or in the queue), each with Accept; shown while
// the desk has no call and no incoming transfer.
import { ago, el } from "../dom.js";

export function incomingCallsInputs(desk) {
  const snap = desk.snap || {};
  return {
    available: !!(snap.me || {}).available,
    // "waiting 12s" is part of what is drawn: the list is drawn again when a wait shown changes.
    calls: (snap.incoming || []).map((c) => ({
      call_id: c.call_id,
      caller_name: c.caller_name || "Caller",
      ringing: !!c.offered_to,
      waiting: ago(c.at),
    })),
  };
}

export function drawIncomingCalls(d, desk) {
  return el(
    "section",
    { class: "wt-card wt-incoming" },
    el("h3", {}, "Incoming calls"),
    d.calls.length
      ? el(
          "ul",
          { class: "wt-list" },
          d.calls.map((c) =>
            el(
              "li",
              { class: "wt-incoming-call", dataset: { callId: c.call_id, ringing: c.ringing ? "1" : "0" } },
              el("span", { class: "wt-ring" }),
              el(
                "span",
                { class: "wt-grow" },
                el("b", {}, c.caller_name),
                el("span", { class: "wt-muted wt-small" }, ` · ${c.ringing ? "ringing you" : "in the queue"} · waiting ${c.waiting}`),
              ),
              el("button", { class: "wt-btn wt-primary wt-accept-call", onclick: () => desk.acceptCall(c.call_id) }, "Accept"),
            ),
          ),
        )
      : el(
          "div",
          { class: "wt-empty" },
          d.available ? "No calls waiting. Calls offered to you appear here." : "You're unavailable: go available to receive calls.",
        ),
  );
}
