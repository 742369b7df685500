// What a transfer carries to the target: the summary card (the spoken brief, the caller's facts)
// and the briefing Q&A (B's questions to the briefing and its spoken answers). Used by the transfer
// progress (desk/transfer.js), the incoming-transfer card (desk/incoming_transfer.js) and the live
// summary (desk/live.js).
import { el } from "../dom.js";

export function summaryCard(summary, opts) {
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
}

// The exchanges the desk heard for transfer `tid`, in order (inputs of the panels that list them).
export function qaItems(desk, tid) {
  return Object.values(desk.qa[tid] || {}).sort((a, b) => a.at - b.at);
}

// What both transfer panels draw from (desk/transfer.js, desk/incoming_transfer.js): which transfer
// (what their buttons act on) and its state, and its brief and Q&A as this desk has them.
export function briefedTransfer(desk, t) {
  return {
    t: { transfer_id: t.transfer_id, call_id: t.call_id, state: t.state, introduced: !!t.introduced },
    summary: desk.summaries[t.transfer_id] || t.summary || null,
    qa: qaItems(desk, t.transfer_id),
  };
}

// B's questions to the briefing and its spoken answers, in order (text nodes only: they are speech).
export function qaList(items) {
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
