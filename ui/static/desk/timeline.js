// The "timeline" part of the desk: the current call's events and its transfer's, with their times,
// or the last call's until the next one starts (marked as over).
import * as L from "../desk_logic.js";
import { el, time } from "../dom.js";

export function timelineInputs(desk) {
  const current = desk.currentCallId();
  const shown = current || desk.lastCallId;
  const focus = desk.focusTid && desk.transfers[desk.focusTid];
  const t = focus && focus.call_id === shown ? focus : null;
  const items = L.timelineItems(desk.callLog, shown, t, t && desk.events[t.transfer_id]);
  return {
    over: !!(shown && !current),
    transfer: t ? t.transfer_id : null,
    items: items.map((i) => ({ kind: i.kind, time: time(i.at), text: i.text })),
  };
}

export function drawTimeline(d) {
  return el(
    "section",
    { class: "wt-card" },
    el(
      "h3",
      {},
      "Call timeline",
      d.over ? el("span", { class: "wt-muted wt-small", dataset: { testid: "timeline-over" } }, " · last call, over") : null,
      d.transfer ? el("span", { class: "wt-muted wt-small" }, ` · transfer ${d.transfer}`) : null,
    ),
    d.items.length
      ? el(
          "ol",
          { class: "wt-timeline", dataset: { testid: "timeline" } },
          d.items.map((i) => el("li", { dataset: { kind: i.kind } }, el("time", {}, i.time), el("span", {}, i.text))),
        )
      : el("div", { class: "wt-empty" }, "Events of the call and its transfers appear here with their times."),
  );
}
