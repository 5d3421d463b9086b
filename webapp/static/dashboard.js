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

  // A column's explanation shows on hover and focus. Right after a sort, pointer and focus are still on that
  // header, and the explanation would cover the rows just sorted: it stays hidden until the pointer leaves
  // the header or focus moves on.
  var quietTip = null;
  function quieten(event) {
    if (event.type === "keydown" && event.key !== "Enter") return;
    var link = event.target.closest && event.target.closest("th a[aria-describedby]");
    if (!link) return;
    quietTip = link.getAttribute("aria-describedby");
    hush(document.getElementById(quietTip));
  }
  function hush(tip) {
    var th = tip && tip.closest("th");
    if (!th) return;
    tip.classList.add("tip-quiet");
    function wake() {
      tip.classList.remove("tip-quiet");
      th.removeEventListener("mouseleave", wake);
      th.removeEventListener("focusout", wake);
    }
    th.addEventListener("mouseleave", wake);
    th.addEventListener("focusout", wake);
  }
  document.addEventListener("click", quieten, true);
  document.addEventListener("keydown", quieten, true);
  document.addEventListener("htmx:afterSettle", function () {
    var wanted = quietTip;
    quietTip = null;
    if (wanted) hush(document.getElementById(wanted));
  });
})();
