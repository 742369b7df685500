// A transfer to this agent: who it is from, the caller, the brief and the briefing Q&A, then Accept
// or Decline (with a reason) while consulting; during an introduction, who is joining whom.
import * as L from "../desk_logic.js";
import { el } from "../dom.js";
import { briefedTransfer, qaList, summaryCard } from "./briefing.js";

const { DECLINE_REASONS } = L;

export function incomingTransferInputs(desk, t) {
  if (!DECLINE_REASONS.includes(desk.form.reason)) desk.form.reason = DECLINE_REASONS[0];
  const briefed = briefedTransfer(desk, t);
  return {
    ...briefed,
    t: {
      ...briefed.t,
      from: t.from_name || t.from_agent,
      queue: t.queue || "",
      caller: t.caller_name || "unknown",
      byAgent: t.target_kind === "agent",
    },
    reason: desk.form.reason,
  };
}

export function drawIncomingTransfer(d, desk) {
  const t = d.t; // what the buttons act on: transfer_id and call_id
  const consulting = t.state === "consulting";
  const reason = el(
    "select",
    { name: "decline-reason", class: "wt-input", "aria-label": "Reason for declining" },
    DECLINE_REASONS.map((r) => el("option", { value: r }, r)),
  );
  reason.value = d.reason;
  reason.addEventListener("change", () => {
    desk.form.reason = reason.value;
  });
  return el(
    "section",
    { class: "wt-card wt-incoming-transfer", dataset: { state: t.state } },
    el("h3", {}, t.state === "introducing" ? "Introduction" : "Incoming transfer"),
    el(
      "div",
      { class: "wt-callline" },
      el("span", {}, "From ", el("b", {}, t.from), t.queue ? ` via the ${t.queue} queue` : "", " · caller ", el("b", {}, t.caller)),
      el("span", { class: `wt-pill wt-t-${t.state}` }, L.stateLabel(t.state)),
    ),
    summaryCard(d.summary, { testid: "incoming-summary", empty: "The summary is on its way…" }),
    t.byAgent && consulting
      ? el(
          "p",
          { class: "wt-small wt-muted" },
          "Ask the briefing by voice: \u201cBriefing, what\u2019s the account number?\u201d, or any question while nobody else speaks.",
        )
      : null,
    qaList(d.qa),
    t.state === "introducing"
      ? el(
          "p",
          { class: "wt-small wt-muted" },
          t.introduced ? `You're with the caller and ${t.from}; they'll leave shortly.` : "Joining the caller…",
        )
      : el(
          "div",
          { class: "wt-controls" },
          el(
            "button",
            { class: "wt-btn wt-primary wt-accept-transfer", onclick: () => desk.transferAction("accept", t), disabled: !consulting },
            "Accept",
          ),
          el("label", { class: "wt-field wt-inline" }, el("span", { class: "wt-small" }, "Reason"), reason),
          el(
            "button",
            { class: "wt-btn wt-danger wt-decline-transfer", onclick: () => desk.transferAction("decline", t), disabled: !consulting },
            "Decline",
          ),
        ),
  );
}
