// Small helpers every panel uses: building DOM nodes, swapping a panel's nodes while keeping the
// focus and typed text, times, the page's event bus and calls to the server functions.
//
// Everything is drawn with DOM APIs: text goes through textContent, never innerHTML,
// so names and messages from users can't become markup or script.

// el("div", {class: "x", dataset: {a: 1}, onclick: fn}, "text", childNode, ...)
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "value") node.value = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// Make `nodes` (in order; nulls skipped) the children of `root`, touching only what differs: a node
// already in place stays (with its focus, selection and scroll), the others are removed or inserted.
// A focused field in a removed node is focused again in its replacement (same `name`), caret kept.
export function patch(root, nodes) {
  const want = nodes.filter(Boolean);
  const have = Array.from(root.childNodes);
  if (want.length === have.length && want.every((n, i) => n === have[i])) return;
  const active = document.activeElement;
  const name = active && root.contains(active) ? active.getAttribute("name") : null;
  const pos = name && typeof active.selectionStart === "number" ? active.selectionStart : null;
  const keep = new Set(want);
  for (const n of have) if (!keep.has(n)) n.remove();
  let cursor = root.firstChild;
  for (const n of want) {
    if (n === cursor) cursor = cursor.nextSibling;
    else root.insertBefore(n, cursor);
  }
  if (!name || root.contains(active)) return;
  const again = root.querySelector(`[name="${name}"]`);
  if (!again) return;
  again.focus();
  if (pos !== null && typeof again.setSelectionRange === "function") {
    try {
      again.setSelectionRange(pos, pos);
    } catch {
      /* not a text input */
    }
  }
}

export function time(ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

export function ago(ts) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${s % 60}s`;
}

export function debounce(fn, ms) {
  let t = null;
  return (...a) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...a), ms);
  };
}

// The page's events between controllers: "agent-signed-in", "agent-signed-out", "lobby-message", "page-roles".
export const bus = new EventTarget();
export const emit = (type, detail) => bus.dispatchEvent(new CustomEvent(type, { detail }));

// Server functions answer {error} instead of throwing; network failures become errors too.
export async function call(server, name, args) {
  if (!server || typeof server[name] !== "function") return { error: `The server function ${name} is not available.` };
  try {
    const out = await server[name](args || {});
    return out && typeof out === "object" ? out : { error: "Unexpected answer from the server." };
  } catch {
    return { error: "The server could not be reached. Check your connection and try again." };
  }
}
