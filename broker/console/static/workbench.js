// The mapping workbench's page script (same origin, no inline script):
// compiles the draft as it is typed and lists its problems with their
// line:column, and tells when a test sign-in started from this page has
// finished. The page works without it: every button submits the form.
(function () {
  "use strict";
  var form = document.getElementById("wb-form");
  var draft = document.getElementById("wb-draft");
  var out = document.getElementById("wb-problems");
  if (!form || !draft || !out) {
    return;
  }
  var csrf = form.querySelector('input[name="csrf"]').value;
  var timer = null;
  var seq = 0;

  // moveTo puts the caret at line:col of the draft.
  function moveTo(line, col) {
    var lines = draft.value.split("\n");
    var pos = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) {
      pos += lines[i].length + 1;
    }
    pos += Math.max(col - 1, 0);
    draft.focus();
    draft.setSelectionRange(pos, pos);
  }

  function show(answer) {
    out.textContent = "";
    if (answer.ok) {
      var ok = document.createElement("p");
      ok.className = "wb-ok";
      ok.textContent = "The draft compiles.";
      out.appendChild(ok);
      return;
    }
    var head = document.createElement("p");
    head.className = "wb-error";
    head.textContent = "The draft does not compile:";
    out.appendChild(head);
    var ul = document.createElement("ul");
    ul.className = "wb-problems";
    answer.problems.forEach(function (p) {
      var li = document.createElement("li");
      var b = document.createElement("button");
      b.type = "button";
      b.className = "wb-pos";
      b.textContent = p.line + ":" + p.column;
      b.setAttribute("aria-label", "Go to line " + p.line + ", column " + p.column);
      b.addEventListener("click", function () { moveTo(p.line, p.column); });
      li.appendChild(b);
      li.appendChild(document.createTextNode(" " + (p.path ? p.path + ": " : "") + p.message));
      ul.appendChild(li);
    });
    out.appendChild(ul);
  }

  function compile() {
    var mine = ++seq;
    var body = new URLSearchParams();
    body.set("draft", draft.value);
    fetch(draft.getAttribute("data-compile"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded" },
      body: body.toString()
    }).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (answer) {
      if (answer && mine === seq) {
        show(answer);
      }
    }).catch(function () {});
  }

  draft.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(compile, 400);
  });

  // After "Test sign-in", ask every few seconds whether it finished.
  var test = document.getElementById("wb-test");
  var status = document.getElementById("wb-test-status");
  if (test && status) {
    test.addEventListener("click", function () {
      var tries = 0;
      status.textContent = "Complete the sign-in in the new tab, then come back here.";
      var poll = setInterval(function () {
        if (++tries > 200) {
          clearInterval(poll);
          return;
        }
        fetch(form.getAttribute("action") + "/test-status", { credentials: "same-origin" }).then(function (r) {
          return r.ok ? r.json() : null;
        }).then(function (s) {
          if (s && s.finished > 0) {
            clearInterval(poll);
            status.textContent = "A test sign-in finished. Loading it…";
            var b = document.createElement("input");
            b.type = "hidden";
            b.name = "action";
            b.value = "load-test";
            form.appendChild(b);
            form.submit();
          }
        }).catch(function () {});
      }, 3000);
    });
  }
})();
