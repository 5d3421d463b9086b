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
})();
