// The warm transfer from this desk's call: the controls to start one (an agent, a queue or a phone
// number), then its progress (state, the phone leg, the brief, the briefing Q&A, and the buttons for
// this state). Both are drawn inside the call card (desk/call_card.js), from its inputs.
import * as L from "../desk_logic.js";
import { el } from "../dom.js";
import { briefedTransfer, qaList, summaryCard } from "./briefing.js";

const PHONE_HINT = {
  off: "Phone transfers need Twilio: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER and PUBLIC_BASE_URL.",
  noSip:
    "No LiveKit SIP endpoint (LIVEKIT_SIP_URI): the number hears the brief and can answer, but can't join the caller. Accepting ends the transfer and the caller stays with you.",
};

// --- starting a transfer ---------------------------------------------------------------------
// The choice offered, and the form's values (a pick no longer offered becomes the first one offered).
export function controlsInputs(desk) {
  const snap = desk.snap || {};
  const me = (snap.me || {}).identity;
  const targets = (snap.agents || []).filter((a) => a.available && a.identity !== me).map((a) => ({ identity: a.identity, name: a.name }));
  // Queues (AGENT_SKILLS): offered to the agent idle longest; a decline or no answer goes to the next.
  const queues = (snap.queues || []).map((q) => ({ value: `queue:${q.name}`, label: `Queue: ${q.name} (${q.available} available)` }));
  const values = [...targets.map((a) => a.identity), ...queues.map((q) => q.value)];
  if (!values.includes(desk.form.target)) desk.form.target = values.length ? values[0] : "";
  const phone = snap.phone || {};
  if (!phone.enabled) desk.form.phone = "";
  return {
    targets,
    queues,
    target: desk.form.target,
    phone: desk.form.phone,
    phoneEnabled: !!phone.enabled,
    canBridge: !!phone.can_bridge,
    busy: !!desk.busy,
  };
}

export function drawControls(d, desk) {
  const options = [
    ...d.targets.map((a) => el("option", { value: a.identity }, `${a.name} (${a.identity})`)),
    ...d.queues.map((q) => el("option", { value: q.value }, q.label)),
  ];
  const select = el(
    "select",
    { name: "target", class: "wt-input", "aria-label": "Transfer to agent or queue" },
    options.length ? options : el("option", { value: "" }, "No other agent is available"),
  );
  select.value = d.target;
  select.addEventListener("change", () => {
    desk.form.target = select.value;
  });
  const phone = el("input", {
    name: "phone",
    class: "wt-input",
    value: d.phone,
    placeholder: "+14155550123",
    inputmode: "tel",
    maxlength: 20,
    disabled: !d.phoneEnabled,
  });
  phone.addEventListener("input", () => {
    desk.form.phone = phone.value;
  });
  const hint = !d.phoneEnabled ? PHONE_HINT.off : !d.canBridge ? PHONE_HINT.noSip : "";
  return el(
    "div",
    { class: "wt-transfer-controls" },
    el("h4", {}, "Warm transfer"),
    el(
      "div",
      { class: "wt-row" },
      el("label", { class: "wt-field wt-grow" }, el("span", {}, "To an available agent or a queue"), select),
      el("label", { class: "wt-field" }, el("span", {}, "or a phone number"), phone),
    ),
    hint ? el("p", { class: "wt-note", dataset: { testid: "phone-hint" } }, hint) : null,
    el(
      "button",
      { class: "wt-btn wt-primary wt-start-transfer", onclick: () => desk.startTransfer(), disabled: d.busy },
      "Start warm transfer",
    ),
  );
}

// --- a transfer under way --------------------------------------------------------------------
export function progressInputs(desk, t) {
  const briefed = briefedTransfer(desk, t);
  return {
    ...briefed,
    t: {
      ...briefed.t,
      byPhone: t.target_kind === "phone",
      to: t.queue ? `${t.queue} queue · ${t.target_name || t.target}` : t.target_name || t.target,
    },
    leg: L.legText(t.phone_leg),
    says: L.transferSays(t),
  };
}

export function drawProgress(d, desk) {
  const t = d.t; // what the buttons act on: transfer_id and call_id
  const consulting = t.state === "consulting";
  return el(
    "div",
    { class: "wt-transfer-progress", dataset: { state: t.state } },
    el(
      "h4",
      {},
      `Warm transfer to ${t.to}`,
      " ",
      el("span", { class: `wt-pill wt-t-${t.state}`, dataset: { testid: "transfer-state" } }, L.stateLabel(t.state)),
    ),
    t.byPhone ? el("div", { class: "wt-small" }, "Phone: ", el("b", { dataset: { testid: "phone-leg" } }, d.leg || "Dialing")) : null,
    el("p", { class: "wt-small wt-muted" }, d.says),
    summaryCard(d.summary, { testid: "transfer-summary", empty: "Preparing the summary…" }),
    qaList(d.qa),
    t.state === "introducing"
      ? el(
          "div",
          { class: "wt-controls" },
          el(
            "button",
            { class: "wt-btn wt-primary wt-leave", onclick: () => desk.transferAction("leave", t), disabled: !t.introduced },
            "Leave the call",
          ),
          el("button", { class: "wt-btn wt-danger wt-cancel", onclick: () => desk.transferAction("cancel", t) }, "Cancel introduction"),
        )
      : el(
          "div",
          { class: "wt-controls" },
          // A phone target accepts with its keypad; only agents have Complete and Introduce.
          t.byPhone
            ? null
            : el(
                "button",
                { class: "wt-btn wt-primary wt-complete", onclick: () => desk.transferAction("complete", t), disabled: !consulting },
                "Complete transfer",
              ),
          t.byPhone
            ? null
            : el(
                "button",
                {
                  class: "wt-btn wt-introduce",
                  onclick: () => desk.transferAction("introduce", t),
                  disabled: !consulting,
                  title: "B joins you and the caller; you leave when you're done",
                },
                "Introduce (3-way)",
              ),
          el(
            "button",
            { class: "wt-btn wt-danger wt-cancel", onclick: () => desk.transferAction("cancel", t), disabled: !consulting },
            "Cancel transfer",
          ),
        ),
  );
}
