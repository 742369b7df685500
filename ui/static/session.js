// What a reload keeps, for this browser tab only (sessionStorage): an agent desk's sign-in
// (`wt-agent-<slot>`) and the caller's call with its ticket (`wt-call-<slot>`), never sent elsewhere.
// The desk (desk/desk.js) and the caller phone (caller_phone.js) resume from it; page.js asks which
// roles have one, to bring them back before their tab is ever shown.
export class SavedSession {
  static desk(slot) {
    return new SavedSession(`wt-agent-${slot}`);
  }

  static call(slot) {
    return new SavedSession(`wt-call-${slot}`);
  }

  constructor(key) {
    this.key = key;
    this._resuming = null;
  }

  exists() {
    try {
      return !!sessionStorage.getItem(this.key);
    } catch {
      return false;
    }
  }

  load() {
    try {
      return JSON.parse(sessionStorage.getItem(this.key) || "null");
    } catch {
      return null;
    }
  }

  store(value) {
    try {
      if (value) sessionStorage.setItem(this.key, JSON.stringify(value));
      else sessionStorage.removeItem(this.key);
    } catch {
      /* storage unavailable: sign in (or call) again after a reload */
    }
  }

  // One resume at a time (the tab's own panel and the page panel both ask); done once `resume()`'s
  // promise settles (the role back in its rooms), after which a new call runs it again.
  resumeOnce(resume) {
    if (!this._resuming)
      this._resuming = resume().finally(() => {
        this._resuming = null;
      });
    return this._resuming;
  }
}
