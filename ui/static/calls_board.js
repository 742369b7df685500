// Calls tab: agents, calls and transfers, live. Uses the session of an agent signed in
// on this page (Agent A or Agent B tab) and redraws whenever that agent's lobby hears
// something (every call and transfer change is announced there).
import { bus, call, debounce, el, time } from "./dom.js";
import { signedInSession } from "./desk/desk.js";
const STATUS = { waiting: "Waiting", active: "Active", on_hold: "On hold", ended: "Ended" };

class CallsBoard {
  constructor() {
    this.root = null;
    this.server = null;
    this.data = null;
    this.error = "";
    this.refresh = debounce(() => this.load(), 250);
    bus.addEventListener("lobby-message", () => this.refresh());
    bus.addEventListener("agent-signed-in", () => this.refresh());
    bus.addEventListener("agent-signed-out", () => this.refresh());
    setInterval(() => this.load(), 15000); // safety net only
  }

  attachPart(_kind, root, server) {
    this.root = root;
    this.server = this.server || server;
    root.classList.add("wt-calls");
    this.load();
  }

  session() {
    return signedInSession();
  }

  async load() {
    const session = this.session();
    if (!session) {
      this.data = null;
      this.render();
      return;
    }
    const out = await call(this.server, "dashboard", { session });
    if (out.error) {
      this.error = out.error;
    } else {
      this.data = out;
      this.error = "";
    }
    this.render();
  }

  table(cls, headers, rows) {
    return el(
      "table",
      { class: `wt-table ${cls}` },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          headers.map((h) => el("th", {}, h)),
        ),
      ),
      el(
        "tbody",
        {},
        rows.length
          ? rows.map((r) =>
              el(
                "tr",
                {},
                r.map((c) => el("td", {}, c)),
              ),
            )
          : el("tr", {}, el("td", { colspan: headers.length, class: "wt-empty" }, "Nothing yet.")),
      ),
    );
  }

  render() {
    const root = this.root;
    if (!root) return;
    if (!this.data) {
      root.replaceChildren(
        el("h2", { class: "wt-title" }, "Calls"),
        el("div", { class: "wt-empty" }, this.error || "Sign in on the Agent A or Agent B tab to see live calls and transfers."),
      );
      return;
    }
    const d = this.data;
    const pill = (text, cls) => el("span", { class: `wt-pill ${cls}` }, text);
    root.replaceChildren(
      el(
        "div",
        { class: "wt-deskhead" },
        el("h2", { class: "wt-title" }, "Calls"),
        el("span", { class: "wt-muted wt-small" }, `updated ${time(d.now)}`),
      ),
      el(
        "div",
        { class: "wt-muted wt-small", dataset: { testid: "services" } },
        `Service functions: ${d.functions_backend} · live transcription ${d.live_transcription ? "on" : "off"}`,
      ),
      el(
        "div",
        { class: "wt-grid3" },
        el(
          "section",
          { class: "wt-card" },
          el("h3", {}, "Agents"),
          this.table(
            "wt-agents",
            ["Agent", "ID", "Queues", "Status"],
            d.agents.map((a) => [
              a.name,
              a.identity,
              (a.queues || []).join(", ") || "—",
              pill(
                a.label || a.state,
                a.state === "available" ? "wt-avail-on" : ["away", "offline"].includes(a.state) ? "wt-avail-off" : "wt-avail-busy",
              ),
            ]),
          ),
        ),
        el(
          "section",
          { class: "wt-card wt-span2" },
          el("h3", {}, "Calls"),
          this.table(
            "wt-calls-table",
            ["Call", "Caller", "Agent", "Status", "Started", "Updated"],
            d.calls.map((c) => [
              c.call_id,
              c.caller_name || "—",
              c.agent_name || c.agent_identity || "—",
              pill(STATUS[c.status] || c.status, `wt-call-${c.status}`),
              time(c.created_at),
              time(c.updated_at),
            ]),
          ),
        ),
      ),
      el(
        "section",
        { class: "wt-card", dataset: { testid: "functions" } },
        el("h3", {}, "Service functions"),
        // Text nodes only (el): a fallback's reason is shown as text, never parsed as HTML.
        this.table(
          "wt-functions-table",
          ["Function", "Where it last ran", "Fell back", "When", "Took"],
          (d.functions || []).map((f) => [
            f.function,
            `${f.backend}${f.origin ? ` · ${f.origin}` : ""}${f.ok ? "" : ` · failed: ${f.error}`}`,
            f.fell_back ? `yes: ${f.reason}` : "no",
            time(f.at),
            `${Math.round(f.duration_s * 1000)} ms`,
          ]),
        ),
      ),
      el(
        "section",
        { class: "wt-card" },
        el("h3", {}, "Transfers"),
        this.table(
          "wt-transfers-table",
          ["Transfer", "Call", "From", "To", "State", "Reason", "Updated"],
          d.transfers.map((t) => [
            t.transfer_id,
            t.call_id,
            t.from_name || t.from_agent,
            t.target_name || t.target,
            pill(t.state, `wt-t-${t.state}`),
            t.reason || "",
            time(t.updated_at),
          ]),
        ),
      ),
    );
  }
}

let board = null;
export function callsBoard() {
  return (board = board || new CallsBoard());
}
