// The page itself: a panel outside the tabs, so it is mounted whatever tab is shown. Gradio
// mounts a tab's components only when the tab is first opened, so after a reload the desks and
// the caller would wait for a click on their tab (and the server would end the call or the
// consult meanwhile). This panel resumes what this browser tab was doing (sign-ins, the call)
// at once, and says so when the page plays several roles and which one has the microphone.
import { bus, el } from "./dom.js";
import { ROLE_NAMES, liveRoles, micRole, resuming } from "./livekit_room.js";
import { phone } from "./caller_phone.js";
import { desk } from "./desk/desk.js";
import { SavedSession } from "./session.js";

class PageBoot {
  attachPart(_kind, root, server) {
    const props = this.props || {};
    this.root = root;
    root.classList.add("wt-page");
    const words = (v) =>
      String(v || "")
        .split(/\s+/)
        .filter(Boolean);
    // Every role coming back counts as played from the start (see liveRoles in livekit_room.js), so the one resumed
    // first does not take the microphone while the others are still on their way.
    const desks = words(props.wt_agents).filter((slot) => SavedSession.desk(slot).exists());
    const calls = words(props.wt_callers).filter((slot) => SavedSession.call(slot).exists());
    for (const slot of [...desks, ...calls]) resuming(slot, true);
    for (const slot of desks)
      desk(slot, null)
        .adopt(server)
        .finally(() => resuming(slot, false));
    for (const slot of calls)
      phone(slot)
        .adopt(server)
        .finally(() => resuming(slot, false));
    bus.addEventListener("page-roles", () => this.render());
    this.render();
  }

  // One page playing several roles: which one speaks, and that none hears the others.
  render() {
    const live = Array.from(liveRoles());
    if (live.length < 2) {
      this.root.replaceChildren();
      return;
    }
    const names = live.map((r) => ROLE_NAMES[r] || r);
    const list = names.length > 1 ? `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}` : names[0];
    const holder = ROLE_NAMES[micRole()] || "none of them";
    this.root.replaceChildren(
      el(
        "div",
        { class: "wt-notice wt-page-roles", role: "status", dataset: { testid: "page-roles" } },
        `This page plays ${list}. The microphone follows the visible tab: now ${holder}; the other roles are muted. `,
        "No role plays back another role of this page.",
      ),
    );
  }
}

const boot = new PageBoot();
export function pageBoot(_slot, props) {
  boot.props = props || {};
  return boot;
}
