// tracer_site: the little that htmx cannot do. No inline handlers (CSP): everything is wired here.
(function () {
  "use strict";

  // Filter forms (data-drop-empty) leave their empty fields out of the request, so
  // the pushed URL says only what is filtered: /?status=failed, not /?status=failed&q=&...
  document.addEventListener("htmx:configRequest", function (event) {
    if (!event.detail.elt.closest("[data-drop-empty]")) return;
    const params = event.detail.parameters;
    const names = params instanceof FormData ? Array.from(params.keys()) : Object.keys(params);
    names.forEach(function (name) {
      const value = params instanceof FormData ? params.get(name) : params[name];
      if (value === "" || value === null) {
        if (params instanceof FormData) params.delete(name); else delete params[name];
      }
    });
  });

  // "Filters (n)": the count follows the form as it changes (the page wrote the first).
  // A select left on its first option (its default) filters nothing.
  const NOT_FILTERS = ["sort", "after", "before", "page", "seen", "jump", "tab", "csrfmiddlewaretoken"];
  function recountFilters(event) {
    const toggle = event.target.closest("[data-filter-toggle]");
    const out = toggle && toggle.querySelector(".filter-count");
    const form = toggle && toggle.querySelector("form");
    if (!out || !form) return;
    const names = new Set();
    Array.from(form.elements).forEach(function (field) {
      if (!field.name || field.disabled || NOT_FILTERS.indexOf(field.name) >= 0) return;
      if ((field.type === "checkbox" || field.type === "radio") && !field.checked) return;
      const value = String(field.value || "").trim();
      const first = field.tagName === "SELECT" && field.options.length ? field.options[0].value : "";
      if (value && value !== first) names.add(field.name);
    });
    out.textContent = "(" + names.size + ")";
  }
  document.addEventListener("change", recountFilters);
  document.addEventListener("input", recountFilters);

  // A request the server could not answer because the database was busy (503, its
  // message retargeted to the flash area: traces/middleware.py) shows that message
  // there, as a 400's is; any other 5xx is still not swapped (htmx-config in base.html).
  document.addEventListener("htmx:beforeSwap", function (event) {
    const xhr = event.detail.xhr;
    if (xhr && xhr.status === 503 && xhr.getResponseHeader("HX-Retarget") === "#flash") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // A successful swap clears an earlier error shown in the flash area.
  document.addEventListener("htmx:afterSwap", function (event) {
    const flash = document.getElementById("flash");
    const xhr = event.detail.xhr;
    if (flash && event.detail.target !== flash && (!xhr || xhr.status < 400)) flash.replaceChildren();
  });

  // Copy buttons: copy the text of the element named by data-copy.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    const text = source ? source.textContent : button.dataset.copyText || "";
    const done = function () {
      const label = button.textContent;
      button.textContent = "copied";
      setTimeout(function () { button.textContent = label; }, 1200);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
      done();
    }
  });

  // Keyboard: "/" search, j/k move between rows, Enter opens, Esc closes the step panel.
  // Visibility is checked at the key press too: the "toggle" event that takes a
  // collapsed node's rows out of the order arrives a task after the click.
  function rows() {
    return Array.from(document.querySelectorAll("[data-row]")).filter(function (row) {
      return row.checkVisibility ? row.checkVisibility() : row.offsetParent !== null;
    });
  }
  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable]");
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape") {
      const close = document.querySelector("[data-panel-close]");
      if (close) close.click();
      if (typing(event.target)) event.target.blur();
      return;
    }
    if (typing(event.target)) return;
    if (event.key === "/") {
      const search = document.querySelector("[data-shortcut='/']");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
      return;
    }
    if (event.key === "j" || event.key === "k") {
      const all = rows();
      if (!all.length) return;
      let index = all.indexOf(document.activeElement.closest("[data-row]"));
      index = event.key === "j" ? Math.min(all.length - 1, index + 1) : Math.max(0, index - 1);
      all[index].focus();
      all[index].scrollIntoView({ block: "nearest" });
      event.preventDefault();
      return;
    }
    if (event.key === "Enter") {
      const row = event.target.closest("[data-row]");
      const link = row && row.querySelector("[data-row-link]");
      if (link) { link.click(); event.preventDefault(); }
    }
  });

  // Timeline hover: a tooltip with the step's name, status and times.
  let tip = null;
  document.addEventListener("mouseover", function (event) {
    const bar = event.target.closest("[data-tip]");
    if (!bar) { if (tip) tip.hidden = true; return; }
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "timeline-tip";
      document.body.appendChild(tip);
    }
    tip.textContent = bar.dataset.tip;
    tip.hidden = false;
  });
  document.addEventListener("mousemove", function (event) {
    if (tip && !tip.hidden) {
      tip.style.left = event.clientX + 12 + "px";
      tip.style.top = event.clientY + 12 + "px";
    }
  });

  // Upload: drag and drop onto the drop zone fills the file input.
  document.addEventListener("dragover", function (event) {
    const zone = event.target.closest("[data-dropzone]");
    if (!zone) return;
    event.preventDefault();
    zone.classList.add("dragover");
  });
  document.addEventListener("dragleave", function (event) {
    const zone = event.target.closest("[data-dropzone]");
    if (zone) zone.classList.remove("dragover");
  });
  document.addEventListener("drop", function (event) {
    const zone = event.target.closest("[data-dropzone]");
    if (!zone) return;
    event.preventDefault();
    zone.classList.remove("dragover");
    const input = zone.querySelector("input[type=file]");
    if (input && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });
  document.addEventListener("change", function (event) {
    const input = event.target.closest("[data-dropzone] input[type=file]");
    if (!input) return;
    const list = input.closest("[data-dropzone]").querySelector("[data-file-names]");
    if (list) list.textContent = Array.from(input.files).map(function (f) { return f.name; }).join(", ");
  });
})();

// === run page (run_detail.html): tree rows and the step panel ============================
(function () {
  "use strict";

  // Rows inside a collapsed tree node cannot take focus: take them out of the j/k
  // order (data-row) while hidden, so moving never gets stuck on one.
  function syncRows(root) {
    root.querySelectorAll("[data-row], [data-row-hidden]").forEach(function (row) {
      const visible = row.checkVisibility ? row.checkVisibility() : row.offsetParent !== null;
      row.toggleAttribute("data-row", visible);
      row.toggleAttribute("data-row-hidden", !visible);
    });
  }
  // "toggle" does not bubble; a capturing listener still sees it.
  document.addEventListener("toggle", function (event) {
    const node = event.target;
    if (!(node instanceof HTMLDetailsElement) || !node.classList.contains("tree-node")) return;
    const children = node.querySelector(":scope > .tree-children");
    if (children) syncRows(children);
  }, true);

  // Mark the row whose step is open in the panel; clear it when the panel closes.
  function clearSelection() {
    document.querySelectorAll(".tree-row.selected, .timeline-row.selected").forEach(function (row) {
      row.classList.remove("selected");
    });
  }
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-panel-close]")) { clearSelection(); return; }
    // A tree or timeline row's name link opens its step in the panel.
    const link = event.target.closest("a[data-row-link]");
    const row = link && link.closest(".tree-row, .timeline-row");
    if (!row) return;
    clearSelection();
    row.classList.add("selected");
  });
})();
