/* BannerService tag: fills <ins class="bannerservice" data-campaign="ID" data-target="top|blank"> with
   banners from ONE /api/decision request. No globals, no dependency; silent (the slot collapses) on failure.
   Docs: docs/embedding.md */
(function () {
  "use strict";
  var KEY = "bs_vid", BATCH = 20, VISIBLE = 0.5, DWELL = 1000;
  var script = document.currentScript;
  var base;
  try {
    base = new URL(script.src).origin;
  } catch (e) {
    return;
  }

  function collapse(slot) {
    slot.style.display = "none";
  }

  function storedVid() {
    try {
      return localStorage.getItem(KEY);
    } catch (e) {
      return null; // storage blocked: the server hands out a new vid each time
    }
  }

  function keepVid(vid) {
    try {
      if (vid && vid !== storedVid()) localStorage.setItem(KEY, vid);
    } catch (e) { /* storage blocked */ }
  }

  function beacon(url) {
    try {
      if (navigator.sendBeacon && navigator.sendBeacon(url)) return;
      fetch(url, {method: "POST", mode: "no-cors", keepalive: true, credentials: "omit"}).catch(function () {});
    } catch (e) { /* the event is lost, the page is not */ }
  }

  // Viewable: at least VISIBLE of the banner in the viewport for DWELL ms without a break (IAB/MRC display).
  function watch(node, url) {
    if (!window.IntersectionObserver) return;
    var timer = null, since = null, sent = false;
    // Times are the observer's own (when the change happened), so a busy page that delivers them late
    // neither shortens nor stretches the second.
    var observer = new IntersectionObserver(function (entries) {
      var entry = entries[entries.length - 1];
      if (entry.isIntersecting && entry.intersectionRatio >= VISIBLE) {
        if (since === null) {
          since = entry.time;
          timer = setTimeout(done, Math.max(0, since + DWELL - performance.now()));
        }
      } else if (since !== null) {
        clearTimeout(timer);
        if (entry.time - since >= DWELL) done();
        since = null;
      }
    }, {threshold: [0, VISIBLE, 1]});
    function done() {
      if (sent) return;
      sent = true;
      observer.disconnect();
      beacon(url);
    }
    observer.observe(node);
  }

  function render(slot, d) {
    var link = document.createElement("a");
    var img = document.createElement("img");
    var blank = slot.getAttribute("data-target") === "blank";
    link.href = d.click_url;
    link.target = blank ? "_blank" : "_top";
    link.rel = "nofollow sponsored noopener";
    link.style.display = "block";
    img.width = d.width;
    img.height = d.height;
    img.alt = d.alt || "";
    img.style.cssText = "display:block;border:0;max-width:100%;height:auto";
    img.setAttribute("data-banner-id", d.banner_id);
    img.onload = function () {
      beacon(d.impression_url);
      watch(img, d.viewable_url);
    };
    img.onerror = function () {
      collapse(slot);
    };
    img.src = d.image_url;
    link.appendChild(img);
    slot.style.display = "inline-block";
    slot.appendChild(link);
  }

  function request(slots) {
    var query = slots.map(function (s) {
      return "c=" + encodeURIComponent(s.getAttribute("data-campaign"));
    });
    var vid = storedVid();
    if (vid) query.push("vid=" + encodeURIComponent(vid));
    fetch(base + "/api/decision?" + query.join("&"), {credentials: "omit", cache: "no-store"})
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (body) {
        keepVid(body.vid);
        var answers = body.slots || [];
        slots.forEach(function (slot, i) {
          var d = answers[i];
          if (d && !d.error && d.image_url && d.click_url) render(slot, d);
          else collapse(slot);
        });
      })
      .catch(function () {
        slots.forEach(collapse);
      });
  }

  function run() {
    var found = document.querySelectorAll("ins.bannerservice[data-campaign]");
    var slots = [];
    for (var i = 0; i < found.length; i++) {
      // A second copy of the tag on the page leaves the slots of the first alone.
      if (found[i].getAttribute("data-bs") === null) {
        found[i].setAttribute("data-bs", "");
        slots.push(found[i]);
      }
    }
    for (var start = 0; start < slots.length; start += BATCH) request(slots.slice(start, start + BATCH));
  }

  try {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
    else run();
  } catch (e) { /* never break the publisher's page */ }
})();
