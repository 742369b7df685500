// Each part of the desk is drawn from a small plain object, its inputs (what it shows: names,
// states, texts, form values). A panel's nodes are drawn again only when its inputs changed;
// otherwise the nodes already on the page stay, with their focus, typed text and scroll.
// Pure (no DOM here): tested by tests/js/desk_panels.test.mjs.
export class PanelCache {
  constructor() {
    this.last = new Map(); // panel name → {key, node}
  }

  // {node, drawn}: the node drawn last for `name` while `inputs` are the same, else draw(inputs)'s.
  draw(name, inputs, draw) {
    const key = JSON.stringify(inputs);
    const last = this.last.get(name);
    if (last && last.key === key) return { node: last.node, drawn: false };
    const node = draw(inputs);
    this.last.set(name, { key, node });
    return { node, drawn: true };
  }
}
