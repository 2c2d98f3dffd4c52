// On the signed-out page: follow the Continue link once every
// front-channel logout iframe has loaded, or after five seconds.
(function () {
  var link = document.getElementById("continue");
  if (!link) {
    return;
  }
  var frames = document.querySelectorAll("iframe.frontchannel");
  var left = frames.length;
  var gone = false;
  function go() {
    if (!gone) {
      gone = true;
      window.location.assign(link.href);
    }
  }
  if (left === 0) {
    go();
    return;
  }
  frames.forEach(function (f) {
    f.addEventListener("load", function () {
      left--;
      if (left === 0) {
        go();
      }
    });
  });
  setTimeout(go, 5000);
})();
