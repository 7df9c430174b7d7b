// Keyboard shortcuts for the common decisions (no build step). Keys are ignored while typing in a field.
// k: claim · c: confirm · o: overturn (focus the action) · e: escalate (focus the reason) · n: next item
// v: show (or hide again) a harmful image that opened blurred; clicking it does the same
(function () {
  "use strict";
  function submit(id) {
    var form = document.getElementById(id);
    if (form) { form.requestSubmit ? form.requestSubmit() : form.submit(); return true; }
    return false;
  }
  function focus(id) {
    var el = document.getElementById(id);
    if (el) { el.focus(); return true; }
    return false;
  }
  function reveal() {
    var image = document.getElementById("meme");
    if (!image || !document.getElementById("reveal")) { return false; }
    image.classList.toggle("shielded");
    return true;
  }
  document.addEventListener("click", function (event) {
    var id = event.target && event.target.id;
    if (id === "reveal" || id === "meme") { reveal(); }
  });
  function help() {
    var panel = document.getElementById("shortcuts");
    if (!panel) { return false; }
    panel.hidden = !panel.hidden;
    return true;
  }
  var keys = {
    "?": help,
    v: reveal,
    k: function () { return submit("claim-form"); },
    c: function () { return submit("confirm-form"); },
    o: function () { return focus("overturn-action"); },
    e: function () { return focus("escalate-reason"); },
    n: function () { return submit("next-form"); }
  };
  document.addEventListener("keydown", function (event) {
    var tag = (event.target && event.target.tagName) || "";
    if (event.ctrlKey || event.metaKey || event.altKey || /^(INPUT|TEXTAREA|SELECT)$/.test(tag)) { return; }
    var action = keys[event.key];
    if (action && action()) { event.preventDefault(); }
  });
})();
