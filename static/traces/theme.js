// tracer_site: the light/dark choice, shared by the site and the API docs page.
(function () {
  "use strict";

  // Theme: follow the system unless the user chose; remember the choice. The
  // toggle is pressed while the page is dark, so screen readers say which is on.
  const stored = localStorage.getItem("tracer-theme");
  if (stored) document.documentElement.dataset.theme = stored;
  function currentTheme() {
    const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
    return document.documentElement.dataset.theme || (dark ? "dark" : "light");
  }
  function showTheme() {
    document.querySelectorAll("[data-theme-toggle]").forEach(function (toggle) {
      toggle.setAttribute("aria-pressed", String(currentTheme() === "dark"));
    });
  }
  showTheme(); // deferred: the document is parsed
  document.addEventListener("click", function (event) {
    const toggle = event.target.closest("[data-theme-toggle]");
    if (!toggle) return;
    const next = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("tracer-theme", next);
    showTheme();
  });
})();
