// Live overview: every 2 s, fetch the charts fragment and swap it in. The page works without
// this (a reload shows fresh figures); the button pauses updates, as people reading a chart
// or using a screen reader may need. Updates also pause while the tab is hidden or the focus is
// inside the charts.
const PERIOD_MS = 2000;
const panels = document.getElementById("panels");
const toggle = document.getElementById("live-toggle");
const state = document.getElementById("live-state");
let paused = false;
let timer = null;

async function refresh() {
  // Never pull the content out from under someone reading it with the keyboard.
  if (paused || document.hidden || panels.contains(document.activeElement)) return;
  try {
    const response = await fetch(panels.dataset.src, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    });
    if (response.status === 401) {
      state.textContent = "Signed out: reload the page to sign in again.";
      stop();
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const html = await response.text();
    // Keep an open "as a table" section open across the swap.
    const open = [...panels.querySelectorAll("details[open] summary")].map((s) => s.textContent);
    panels.innerHTML = html;
    for (const summary of panels.querySelectorAll("details summary")) {
      if (open.includes(summary.textContent)) summary.parentElement.open = true;
    }
    panels.dataset.updated = String(Date.now());
    state.textContent = "";
  } catch (error) {
    state.textContent = `Live update failed (${error.message}); retrying.`;
  }
}

function start() {
  timer = setInterval(refresh, PERIOD_MS);
}

function stop() {
  clearInterval(timer);
  timer = null;
}

toggle.hidden = false;
toggle.addEventListener("click", () => {
  paused = !paused;
  toggle.setAttribute("aria-pressed", String(paused));
  toggle.textContent = paused ? "Resume live updates" : "Pause live updates";
  if (!paused) refresh();
});
start();
