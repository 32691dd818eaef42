// The console's only script: live figures and streamed scans over server-sent events.
// Every page reads whole without it; the fragments it inserts were escaped by the server.
"use strict";

function liveFigures() {
  const holder = document.querySelector("[data-live-source]");
  if (!holder || !window.EventSource) return;
  const source = new EventSource(holder.dataset.liveSource);
  const format = new Intl.NumberFormat("en");
  source.addEventListener("figures", (event) => {
    const figures = JSON.parse(event.data);
    for (const cell of document.querySelectorAll("[data-live]")) {
      const value = figures[cell.dataset.live];
      if (value !== undefined) cell.textContent = format.format(value);
    }
    document.body.classList.remove("stale");
  });
  source.addEventListener("problem", () => document.body.classList.add("stale"));
}

function streamedScan() {
  const section = document.getElementById("scan");
  const start = document.getElementById("start-scan");
  const cancel = document.getElementById("cancel-scan");
  const result = document.getElementById("scan-result");
  if (!section || !start || !window.EventSource) return;
  let source = null;
  const stop = (text) => {
    if (source) source.close();
    source = null;
    cancel.hidden = true;
    start.removeAttribute("aria-disabled");
    if (text) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = text;
      result.prepend(note);
    }
  };
  start.addEventListener("click", (event) => {
    event.preventDefault();
    if (source) return;
    result.textContent = "Starting the scan…";
    start.setAttribute("aria-disabled", "true");
    cancel.hidden = false;
    source = new EventSource(section.dataset.scanSource);
    source.addEventListener("progress", (message) => { result.innerHTML = message.data; });
    source.addEventListener("done", (message) => { result.innerHTML = message.data; stop(); });
    source.addEventListener("problem", (message) => {
      stop();
      result.textContent = "";
      const problem = document.createElement("p");
      problem.className = "problem";
      problem.setAttribute("role", "alert");
      problem.textContent = message.data;
      result.append(problem);
    });
    // A dropped stream is not retried: a new scan is the operator's choice.
    source.onerror = () => { if (source) stop("The scan's connection ended before it finished."); };
  });
  cancel.addEventListener("click", () => stop("Cancelled: every letter read went back to the queue in its order."));
}

function liveReplay() {
  const status = document.querySelector("[data-replay-source]");
  if (!status || !window.EventSource) return;
  const source = new EventSource(status.dataset.replaySource);
  source.addEventListener("progress", (message) => { status.innerHTML = message.data; });
  // Ended: the page again, with the actions an ended replay has.
  source.addEventListener("ended", () => { source.close(); window.location.reload(); });
}

liveFigures();
streamedScan();
liveReplay();
