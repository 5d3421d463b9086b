// The dashboard's few behaviours beyond htmx. No inline scripts anywhere: the pages run under a CSP.
(function () {
  "use strict";

  // Self-refreshing parts (data-poll) skip their polls while the tab is hidden, and refresh once it is back.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (document.hidden && elt.hasAttribute("data-poll")) {
      event.preventDefault();
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      document.querySelectorAll("[data-poll]").forEach(function (elt) {
        htmx.ajax("GET", elt.getAttribute("hx-get"), {source: elt, target: elt, swap: "outerHTML"});
      });
    }
  });

  // After a swap, htmx puts focus back on the element with the same id. When that element is gone
  // (the "Next" link on the last page), focus the swapped region instead of dropping it to <body>, or
  // the element its data-focus-fallback names (a "Clear filters" link that went away: the first filter).
  var focusRegion = null;
  document.addEventListener("htmx:beforeRequest", function () {
    var region = document.activeElement && document.activeElement.closest("[data-focus-fallback]");
    focusRegion = region ? (region.getAttribute("data-focus-fallback") || region.id) : null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    var wanted = focusRegion;
    focusRegion = null;
    if (!wanted) return;
    // After htmx's own focus restoring, which may come later than the first settled element.
    window.setTimeout(function () {
      if (document.activeElement && document.activeElement !== document.body) return;
      var region = document.getElementById(wanted);
      var here = region && (region.querySelector("[data-focus-here]") || region);
      if (here) here.focus({preventScroll: true});
    }, 50);
  });
})();
