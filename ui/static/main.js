// The entry module of the page's UI: ui/widgets.py's head loads it (through a one-line loader, see
// head_html there), and it imports the rest. Every warm-transfer gr.HTML component's js_on_load
// (boot.js) hands its element to `attach` below, which binds it to its controller by kind.
import { pageBoot } from "./page.js";
import { callsBoard } from "./calls_board.js";
import { phone } from "./caller_phone.js";
import { desk } from "./desk/desk.js";
import { liveRoles, micRole, page, pageIdentities, room, rooms } from "./livekit_room.js";

// The controller of each kind of panel (its parts share one controller per slot).
const KINDS = { desk, live: desk, timeline: desk, caller: phone, calls: callsBoard, page: pageBoot };

function attach(element, props, server) {
  const kind = props.wt_kind;
  const root = element.querySelector(".wt-shell") || element;
  if (kind === "room") return room(props.wt_slot, props).mount(root);
  const factory = KINDS[kind];
  if (!factory) {
    root.textContent = `Unknown panel ${kind}`;
    return;
  }
  factory(props.wt_slot, props, server).attachPart(kind, root, server);
}

// `window.WT` is only the bridge to code that cannot import a module: boot.js, which Gradio runs as
// the body of a function (js_on_load), not as a module, needs `ready` and `attach` (and leaves in
// window.WT_QUEUE what mounted before this module ran); the browser tests (and a developer's
// console) read the page's rooms and microphone decision (`page`, `rooms`, `liveRoles`, `micRole`,
// `pageIdentities`). Nothing in ui/static reads it.
window.WT = Object.freeze({ ready: true, attach, page, rooms, liveRoles, micRole, pageIdentities });
for (const [element, props, server] of window.WT_QUEUE || []) attach(element, props, server);
window.WT_QUEUE = [];
