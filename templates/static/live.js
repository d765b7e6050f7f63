// Live figures over server-sent events: the page names its stream in <body data-live="...">.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-live");
  if (!url || !window.EventSource) { return; }
  var badge = document.getElementById("live");
  function percent(rate) { return rate === null ? "—" : (Math.round(rate * 1000) / 10).toFixed(1) + "%"; }
  function set(id, field, value) {
    document.querySelectorAll('[data-w="' + id + '"][data-f="' + field + '"]').forEach(function (el) {
      el.textContent = value;
    });
  }
  function update(data) {
    data.warnings.forEach(function (w) {
      set(w.id, "rate", percent(w.rate));
      ["answered", "total", "silent", "help", "evacuated", "open_tasks", "since"].forEach(function (f) {
        set(w.id, f, w[f]);
      });
      document.querySelectorAll('[data-w="' + w.id + '"][data-f="bar"]').forEach(function (el) {
        el.style.width = ((w.rate || 0) * 100).toFixed(1) + "%";
      });
    });
    Object.keys(data.regions || {}).forEach(function (code) {
      var r = data.regions[code];
      document.querySelectorAll('[data-r="' + code + '"]').forEach(function (row) {
        row.querySelector(".r-rate").textContent = percent(r.rate);
        row.querySelector(".r-count").textContent = r.answered + " / " + r.calls;
        row.querySelector(".r-bar").style.width = ((r.rate || 0) * 100).toFixed(1) + "%";
      });
    });
    var curve = document.getElementById("curve");
    if (curve && data.curve) { curve.innerHTML = data.curve; }  // server-drawn, escaped SVG
    var feed = document.getElementById("latest");
    if (!feed) { return; }
    data.answers.slice().reverse().forEach(function (a) {
      if (feed.querySelector('[data-answer="' + a.id + '"]')) { return; }
      var li = document.createElement("li");
      li.setAttribute("data-answer", a.id);
      li.textContent = a.at.slice(11, 16) + " " + a.name + "（" + a.region + "）" + a.status;
      feed.insertBefore(li, feed.firstChild);
      var row = document.querySelector('tr.silent[data-call="' + a.call_id + '"]');
      if (row) {
        row.classList.add("now-answered");
        var state = row.querySelector(".state");
        if (state) { state.textContent = "已应答：" + a.status; }
      }
    });
    var empty = document.getElementById("latest-empty");
    if (empty && data.answers.length) { empty.remove(); }
  }
  var source = new EventSource(url);
  source.addEventListener("update", function (event) {
    update(JSON.parse(event.data));
    if (badge) { badge.textContent = "● 实时"; badge.className = "live on"; }
  });
  source.onerror = function () {
    if (badge) { badge.textContent = "○ 重新连接中"; badge.className = "live"; }
  };
})();
