// Find in run (the run page's find bar, templates/traces/_run_find.html): htmx asks
// the server for the matches; here is only what it cannot do: stepping from match to
// match (Enter / Shift+Enter in the box, the ↑ ↓ buttons, n / N), "f" to focus the
// box, and keeping what was typed while a find was on its way.
(function () {
  "use strict";

  let current = -1;
  let pending = 0; // a window of matches is loading: 1 show its first match, -1 its last
  let sent = null; // the find a request from the box asked for

  const MATCH_ROWS = ".tree-item.find-match > .tree-row, " +
    ".tree-item.find-match > .tree-node > .tree-row, .timeline-row.find-match";

  function input() { return document.querySelector("[data-find-input]"); }
  function matches() { return Array.from(document.querySelectorAll(MATCH_ROWS)); }
  function typing(target) { return target.closest("input, textarea, select, [contenteditable]"); }

  function say(index, shown) {
    const status = document.querySelector("[data-find-status]");
    if (!status) return;
    const total = Number(status.dataset.findTotal || 0).toLocaleString("en-US") +
      (status.dataset.findCapped === "1" ? "+" : "");
    const first = parseInt(status.dataset.findFirst || "0", 10);
    status.textContent = first
      ? "match " + (first + index).toLocaleString("en-US") + " of " + total
      : "match " + (index + 1) + " of " + shown + " here · " + total + " in the run";
  }

  function show(index) {
    const all = matches();
    if (!all.length) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    document.querySelectorAll(".find-current").forEach(function (row) {
      row.classList.remove("find-current");
      row.removeAttribute("aria-current");
    });
    const row = all[current];
    row.classList.add("find-current");
    row.setAttribute("aria-current", "true");
    row.scrollIntoView({ block: "center" });
    say(current, all.length);
  }

  function step(delta) {
    const all = matches();
    if (!all.length) return;
    const next = current + delta;
    if (next >= all.length || next < 0) {
      // Past this window's matches: the next (or previous) window, if any; else around.
      const link = document.querySelector('[data-find-page="' + (delta > 0 ? 1 : -1) + '"]');
      if (link) { pending = delta; link.click(); return; }
      show(next < 0 ? all.length - 1 : 0);
      return;
    }
    show(next);
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-find-step]");
    if (!button) return;
    step(parseInt(button.dataset.findStep, 10));
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const box = event.target.closest && event.target.closest("[data-find-input]");
    if (box) {
      // Enter on the find already shown steps through its matches; on a new one it finds.
      if (event.key === "Enter" && box.value.trim() === (box.dataset.applied || "").trim() &&
          matches().length) {
        event.preventDefault();
        step(event.shiftKey ? -1 : 1);
      }
      return;
    }
    if (typing(event.target)) return;
    if (event.key === "f" && input()) {
      event.preventDefault();
      input().focus();
      input().select();
    } else if ((event.key === "n" || event.key === "N") && matches().length) {
      event.preventDefault();
      step(event.key === "N" ? -1 : 1);
    }
  });

  // What was typed while a find was on its way is kept: the answer's box says
  // what was asked, so it is put back and looked for in turn.
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.elt.closest && event.detail.elt.closest("[data-find]")) {
      const box = input();
      sent = box ? box.value : null;
    }
  });
  let typed = null;
  document.addEventListener("htmx:beforeSwap", function () {
    const box = input();
    typed = box && sent !== null ? box.value : null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    current = -1;
    const box = input();
    if (box && typed !== null && sent !== null && typed !== sent && document.activeElement === box) {
      box.value = typed;
      box.dispatchEvent(new Event("input", { bubbles: true }));
    }
    typed = sent = null;
    if (pending) {
      const delta = pending;
      pending = 0;
      const all = matches();
      if (all.length) show(delta > 0 ? 0 : all.length - 1);
    }
  });
})();
