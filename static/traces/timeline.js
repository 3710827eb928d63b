// tracer_site: the run page's timeline (templates/traces/_run_timeline.html): what htmx
// cannot do. The zoom and pan controls are plain links (htmx swaps the tab); here are
// the minimap's brush, the keyboard shortcuts, folding a row's subtree, and a click on
// a bar opening its step. No inline script or style (CSP): positions are SVG attributes.
(function () {
  "use strict";

  const MIN_WINDOW_MS = 1;

  function timeline() {
    return document.querySelector("[data-timeline]");
  }

  // Go to a window of the axis, as a zoom link would (htmx swaps #run-tabs and pushes the URL).
  function go(fromMs, toMs) {
    const map = document.querySelector("[data-minimap]");
    if (!map) return;
    const span = parseFloat(map.dataset.spanMs);
    let lo = Math.max(0, Math.min(fromMs, toMs));
    let hi = Math.min(span, Math.max(fromMs, toMs));
    if (hi - lo < MIN_WINDOW_MS) {
      hi = Math.min(span, lo + MIN_WINDOW_MS);
      lo = Math.max(0, hi - MIN_WINDOW_MS);
    }
    const url = new URL(map.dataset.url, window.location.href);
    if (hi - lo < span) {
      url.searchParams.set("from_ms", lo.toFixed(3).replace(/\.?0+$/, "") || "0");
      url.searchParams.set("to_ms", hi.toFixed(3).replace(/\.?0+$/, "") || "0");
    }
    const nav = document.querySelector(".zoom-controls");
    const link = document.createElement("a");
    link.hidden = true;
    link.href = url.pathname + url.search;
    link.setAttribute("hx-get", link.getAttribute("href"));
    nav.appendChild(link);
    if (window.htmx) {
      window.htmx.process(link);
      link.click();
    } else {
      window.location.href = link.href;
    }
  }

  // --- the minimap's brush: drag to zoom to a stretch, click to centre the window there ---
  let drag = null;

  function fraction(map, event) {
    const box = map.getBoundingClientRect();
    return Math.min(1, Math.max(0, (event.clientX - box.left) / (box.width || 1)));
  }

  document.addEventListener("pointerdown", function (event) {
    const map = event.target.closest("[data-minimap]");
    if (!map || event.button !== 0) return;
    event.preventDefault();
    map.setPointerCapture(event.pointerId);
    drag = { map: map, start: fraction(map, event), startX: event.clientX, end: null };
    map.classList.add("brushing");
  });

  document.addEventListener("pointermove", function (event) {
    if (!drag) return;
    drag.end = fraction(drag.map, event);
    const brush = drag.map.querySelector("[data-brush]");
    const lo = Math.min(drag.start, drag.end);
    const hi = Math.max(drag.start, drag.end);
    brush.setAttribute("x", (lo * 1000).toFixed(2));
    brush.setAttribute("width", Math.max((hi - lo) * 1000, 2).toFixed(2));
  });

  document.addEventListener("pointerup", function (event) {
    if (!drag) return;
    const d = drag;
    drag = null;
    d.map.classList.remove("brushing");
    const span = parseFloat(d.map.dataset.spanMs);
    const end = fraction(d.map, event);
    if (Math.abs(event.clientX - d.startX) < 4) {
      // A click: the same window's width, centred where clicked.
      const width = parseFloat(d.map.dataset.toMs) - parseFloat(d.map.dataset.fromMs);
      let lo = end * span - width / 2;
      lo = Math.max(0, Math.min(lo, span - width));
      go(lo, lo + width);
    } else {
      go(d.start * span, end * span);
    }
  });

  document.addEventListener("pointercancel", function () {
    if (drag) drag.map.classList.remove("brushing");
    drag = null;
  });

  // --- keyboard: w/s (or + −) zoom, a/d pan, 0 the whole run; arrows pan on the minimap ---
  const KEYS = { w: "in", "+": "in", "=": "in", s: "out", "-": "out", a: "left", d: "right", "0": "reset" };

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (!timeline()) return;
    if (event.target.closest("input, textarea, select, [contenteditable]")) return;
    let name = KEYS[event.key];
    if (event.target.closest("[data-minimap]")) {
      if (event.key === "ArrowLeft") name = "left";
      if (event.key === "ArrowRight") name = "right";
    }
    if (!name) return;
    const control = document.querySelector("a[data-zoom='" + name + "']");
    if (!control) return;
    event.preventDefault();
    control.click();
  });

  // --- folding: a row's toggle hides the rows of the steps inside it (in this window) ---
  // Kept in the URL (`?fold=KEY`, repeated: a reload or a shared link keeps them) and per
  // run for this tab's session (the step URLs the panel pushes and the zoom's links
  // carry none: the session's folds are written back into the URL after each swap).
  const FOLD = "fold";

  function foldKey() {
    const run = window.location.pathname.match(/^\/runs\/\d+\//);
    return "tracer-timeline-folds:" + (run ? run[0] : window.location.pathname);
  }

  function urlFolds() {
    const keys = new URL(window.location.href).searchParams.getAll(FOLD).filter(Boolean);
    return keys.length ? new Set(keys) : null;
  }

  function sessionFolds() {
    try {
      return new Set(JSON.parse(window.sessionStorage.getItem(foldKey()) || "[]"));
    } catch (error) {
      return new Set();
    }
  }

  function savedFolds() {
    return urlFolds() || sessionFolds();
  }

  function saveFolds(folds) {
    try {
      window.sessionStorage.setItem(foldKey(), JSON.stringify(Array.from(folds)));
    } catch (error) {
      // Storage refused (private mode): the URL still holds them.
    }
    writeUrl(folds);
  }

  // The folds into the address bar, in place (no new history entry for a fold).
  function writeUrl(folds) {
    const url = new URL(window.location.href);
    const now = url.searchParams.getAll(FOLD).filter(Boolean).sort().join("\n");
    const wanted = Array.from(folds).sort();
    if (now === wanted.join("\n")) return;
    url.searchParams.delete(FOLD);
    wanted.forEach(function (key) { url.searchParams.append(FOLD, key); });
    window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  }

  function applyFolds(root, folds) {
    const rows = Array.from(root.querySelectorAll(".timeline-row[data-key]"));
    const byKey = new Map(rows.map(function (row) { return [row.dataset.key, row]; }));
    rows.forEach(function (row) {
      const toggle = row.querySelector("[data-fold]");
      if (toggle) {
        const folded = folds.has(row.dataset.key);
        toggle.setAttribute("aria-expanded", folded ? "false" : "true");
        const name = row.querySelector(".t-label").getAttribute("title");
        toggle.setAttribute("aria-label", (folded ? "Show" : "Hide") + " the steps inside " + name);
      }
      // Hidden when any ancestor shown in this window is folded.
      let parent = row.dataset.parent;
      let hidden = false;
      for (let hops = 0; parent !== undefined && hops < 64; hops += 1) {
        if (folds.has(parent)) { hidden = true; break; }
        const up = byKey.get(parent);
        parent = up ? up.dataset.parent : undefined;
      }
      row.hidden = hidden;
      row.toggleAttribute("data-row", !hidden);
      row.toggleAttribute("data-row-hidden", hidden);
    });
  }

  document.addEventListener("click", function (event) {
    const toggle = event.target.closest("[data-fold]");
    if (toggle) {
      const row = toggle.closest(".timeline-row");
      const folds = savedFolds();
      if (folds.has(row.dataset.key)) folds.delete(row.dataset.key); else folds.add(row.dataset.key);
      saveFolds(folds);
      applyFolds(row.closest(".timeline"), folds);
      return;
    }
    // A click on a bar opens its step, as its name does.
    const track = event.target.closest("svg.timeline-track");
    if (track) {
      const link = track.closest(".timeline-row").querySelector("[data-row-link]");
      if (link) link.click();
    }
  });

  function refresh() {
    const list = document.querySelector(".timeline");
    if (!list) return;
    const folds = savedFolds();
    applyFolds(list, folds);
    saveFolds(folds);
  }
  document.addEventListener("DOMContentLoaded", refresh);
  document.addEventListener("htmx:afterSettle", refresh);
  // htmx pushes a swap's URL (a zoom, a window) after it settles: the folds go back in.
  document.addEventListener("htmx:pushedIntoHistory", refresh);
})();
