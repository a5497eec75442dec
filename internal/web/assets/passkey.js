// Passkeys on Vula's pages: enrolment (#passkey-add) and login (#passkey-login). The server's
// options and the authenticator's answers travel as JSON with base64url for binary values
// (WebAuthn Level 3 §5.1.8, §5.1.9). Without this script the password form still works.
"use strict";
(function () {
  function b64u(buf) {
    var s = "", bytes = new Uint8Array(buf);
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function bin(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var raw = atob(s), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }
  function show(msg) {
    var el = document.getElementById("passkey-error");
    el.textContent = msg;
    el.hidden = false;
    el.focus();
  }
  function post(url, csrf, body) {
    return fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : "" })
      .then(function (r) {
        return r.json().then(function (j) {
          if (!r.ok) throw new Error(j.message || j.error || String(r.status));
          return j;
        });
      });
  }
  function descriptors(list) {
    return (list || []).map(function (c) { return { type: c.type, id: bin(c.id), transports: c.transports }; });
  }

  var add = document.getElementById("passkey-add");
  if (add) {
    add.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var csrf = add.dataset.csrf, name = document.getElementById("passkey-name").value;
      post("/account/passkeys/begin", csrf).then(function (o) {
        var pk = o.publicKey;
        pk.challenge = bin(pk.challenge);
        pk.user.id = bin(pk.user.id);
        pk.excludeCredentials = descriptors(pk.excludeCredentials);
        return navigator.credentials.create({ publicKey: pk }).then(function (c) {
          return post("/account/passkeys/finish?ceremony=" + encodeURIComponent(o.ceremony) + "&name=" + encodeURIComponent(name), csrf, {
            id: c.id, rawId: b64u(c.rawId), type: c.type, authenticatorAttachment: c.authenticatorAttachment,
            clientExtensionResults: c.getClientExtensionResults(),
            response: { clientDataJSON: b64u(c.response.clientDataJSON), attestationObject: b64u(c.response.attestationObject),
              transports: c.response.getTransports ? c.response.getTransports() : [] } });
        });
      }).then(function (r) { window.location.assign(r.redirect); }, function (e) { show(e.message); });
    });
  }

  var login = document.getElementById("passkey-login");
  if (login) {
    login.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var csrf = login.dataset.csrf, flow = login.dataset.flow;
      post("/login/passkey/begin?flow=" + encodeURIComponent(flow), csrf).then(function (o) {
        var pk = o.publicKey;
        pk.challenge = bin(pk.challenge);
        pk.allowCredentials = descriptors(pk.allowCredentials);
        return navigator.credentials.get({ publicKey: pk }).then(function (c) {
          return post("/login/passkey/finish?flow=" + encodeURIComponent(flow) + "&ceremony=" + encodeURIComponent(o.ceremony), csrf, {
            id: c.id, rawId: b64u(c.rawId), type: c.type, authenticatorAttachment: c.authenticatorAttachment,
            clientExtensionResults: c.getClientExtensionResults(),
            response: { clientDataJSON: b64u(c.response.clientDataJSON), authenticatorData: b64u(c.response.authenticatorData),
              signature: b64u(c.response.signature), userHandle: c.response.userHandle ? b64u(c.response.userHandle) : null } });
        });
      }).then(function (r) { window.location.assign(r.redirect); }, function (e) { show(e.message); });
    });
  }
})();
