// js_on_load of every warm-transfer gr.HTML component (Gradio runs it as the body of a function, not
// as a module): hand the element to its controller. While the page's modules (main.js) are still
// loading, it waits in window.WT_QUEUE, which main.js attaches in the order the components mounted
// (a desk's own part first: it brings the server functions).
if (window.WT && window.WT.ready) {
  window.WT.attach(element, props, server);
} else {
  (window.WT_QUEUE = window.WT_QUEUE || []).push([element, props, server]);
  setTimeout(function () {
    if (!(window.WT && window.WT.ready))
      element.textContent = "The call widgets did not load (livekit-client or the UI scripts are missing: run `npm ci`).";
  }, 15000);
}
