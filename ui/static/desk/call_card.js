// The desk's current call: the caller, Live or on hold, Join call audio / End call, and under them
// the transfer controls or, once a transfer is open, its progress (desk/transfer.js).
import { OPEN } from "../desk_logic.js";
import { el } from "../dom.js";
import { controlsInputs, drawControls, drawProgress, progressInputs } from "./transfer.js";

export function callCardInputs(desk) {
  const snap = desk.snap || {};
  const call = snap.call;
  const out = snap.transfer_out && OPEN.has(snap.transfer_out.state) ? snap.transfer_out : null;
  return {
    caller: call.caller_name || "Caller",
    status: call.status,
    inRoom: !!desk.callRoom.connected,
    progress: out ? progressInputs(desk, out) : null,
    controls: !out && call.status === "active" ? controlsInputs(desk) : null,
  };
}

export function drawCallCard(d, desk) {
  const held = d.status === "on_hold";
  const card = el(
    "section",
    { class: "wt-card wt-current-call" },
    el("h3", {}, "Current call"),
    el(
      "div",
      { class: "wt-callline" },
      el("b", { dataset: { testid: "call-caller" } }, d.caller),
      el("span", { class: `wt-pill wt-call-${d.status}` }, held ? "Caller on hold" : d.status === "active" ? "Live" : d.status),
    ),
    el(
      "div",
      { class: "wt-controls" },
      !d.inRoom && d.status === "active"
        ? el("button", { class: "wt-btn wt-primary", onclick: () => desk.rejoinCall() }, "Join call audio")
        : null,
      el("button", { class: "wt-btn wt-danger wt-end-call", onclick: () => desk.endCall(), disabled: !!d.progress }, "End call"),
    ),
  );
  if (d.progress) card.append(drawProgress(d.progress, desk));
  else if (d.controls) card.append(drawControls(d.controls, desk));
  return card;
}
