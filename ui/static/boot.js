// js_on_load of every warm-transfer gr.HTML component: hand the element to its
// browser controller once the scripts from `head` have loaded.
(function boot(attempt) {
  const WT = window.WT;
  const kind = props.wt_kind;
  if (window.LivekitClient && WT && WT.ready && (kind === "room" || (WT.kinds && WT.kinds[kind]))) {
    WT.attach(element, props, server);
  } else if (attempt < 600) {
    setTimeout(function () {
      boot(attempt + 1);
    }, 25);
  } else {
    element.textContent = "The call widgets did not load (livekit-client or the UI scripts are missing: run `npm ci`).";
  }
})(0);
