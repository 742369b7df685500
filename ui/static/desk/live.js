// The "live" part of the desk: the rolling summary (or the transfer's brief) and the live captions
// of the call this desk is on now; an ended call's summary and captions are not shown as live.
import * as L from "../desk_logic.js";
import { el } from "../dom.js";
import { summaryCard } from "./briefing.js";

export function summaryInputs(desk) {
  const callId = desk.currentCallId();
  const rolling = (callId && desk.rolling[callId]) || null;
  const focus = desk.focusTid && desk.transfers[desk.focusTid];
  const transferSummary = (callId && focus && focus.call_id === callId && desk.summaries[desk.focusTid]) || null;
  return { rolling, transferSummary };
}

export function drawSummary(d) {
  return el(
    "section",
    { class: "wt-card" },
    el(
      "h3",
      {},
      "Summary",
      el("span", { class: "wt-muted wt-small" }, d.rolling ? " · rolling, live" : d.transferSummary ? " · transfer brief" : ""),
    ),
    summaryCard(d.rolling || d.transferSummary, {
      testid: "live-summary",
      empty: "The rolling summary appears here while live transcription runs.",
    }),
  );
}

export function captionsInputs(desk) {
  const callId = desk.currentCallId();
  const captions = callId ? desk.captions.filter((c) => c.call_id === callId).slice(-30) : [];
  return {
    // What the worker said about its backlog: behind (more than 3 s) and what it dropped.
    lag: L.lagText(callId && desk.captionLag[callId]),
    lines: captions.map((c) => ({
      speaker: c.speaker === "caller" ? "Caller" : String(c.speaker || "").replace(/^agent:/, ""),
      text: c.text,
    })),
  };
}

export function drawCaptions(d) {
  return el(
    "section",
    { class: "wt-card" },
    el("h3", {}, "Live captions"),
    d.lag ? el("div", { class: "wt-notice", role: "status", dataset: { testid: "caption-lag" } }, d.lag) : null,
    d.lines.length
      ? el(
          "ol",
          { class: "wt-captions", dataset: { testid: "captions" } },
          d.lines.map((c) => el("li", {}, el("span", { class: "wt-speaker" }, c.speaker), el("span", {}, c.text))),
        )
      : el("div", { class: "wt-empty" }, "Captions appear here while live transcription runs on the call."),
  );
}

// Once a new caption list is on the page: show its last line.
export function scrollCaptions(section) {
  const list = section.querySelector(".wt-captions");
  if (list) list.scrollTop = list.scrollHeight;
}
