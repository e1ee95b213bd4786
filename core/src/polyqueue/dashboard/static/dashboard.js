// Polyqueue dashboard: live updates and the select-all box. Written for this project.
//
// A page whose <body> has data-live="/live/..." polls that URL every 2 seconds (not while the
// tab is hidden) and swaps each returned fragment into the element with that id, so counts
// and running jobs change in place: no reload, and the scroll position stays.
(function () {
  "use strict";
  var PERIOD_MS = 2000;
  var base = "";
  var timer = null;

  function swap(fragments) {
    Object.keys(fragments).forEach(function (id) {
      var element = document.getElementById(id);
      if (element && element.innerHTML !== fragments[id]) {
        element.innerHTML = fragments[id];
      }
    });
  }

  function poll(url) {
    if (document.hidden) {
      schedule(url);
      return;
    }
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        document.body.classList.toggle("offline", !response.ok);
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (data && data.fragments) {
          swap(data.fragments);
          document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || 0) + 1);
        }
      })
      .catch(function () { document.body.classList.add("offline"); })
      .then(function () { schedule(url); });
  }

  function schedule(url) {
    timer = window.setTimeout(function () { poll(url); }, PERIOD_MS);
  }

  function selectAll() {
    var box = document.getElementById("select-all");
    if (!box) { return; }
    box.addEventListener("change", function () {
      document.querySelectorAll('input[name="id"]').forEach(function (item) {
        item.checked = box.checked;
      });
    });
  }

  function confirmFilterActions() {
    document.querySelectorAll('button[value$="-filter"]').forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm("Apply to every job matching the filter?")) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.body.dataset.live;
    var css = document.querySelector('link[rel="stylesheet"]');
    base = css ? css.getAttribute("href").replace(/\/static\/dashboard\.css$/, "") : "";
    if (live) { schedule(base + live); }
    selectAll();
    confirmFilterActions();
  });
}());
