// The WebAuthn ceremony: the only script of ours, loaded from 'self' (no inline script).
// Elements with data-webauthn="register|signin|factor" get a working button when the
// browser has passkeys; without JavaScript they stay hidden and the forms still work.
(function () {
  "use strict";

  function csrfToken() {
    var headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
    return headers["X-CSRF-Token"] || "";
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) { throw new Error(data.error || data.message || "The request failed."); }
        return data;
      });
    });
  }

  var ceremonies = {
    register: function (box) {
      var name = document.getElementById("passkey-name");
      return post("/account/passkeys/options").then(function (options) {
        return navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey) });
      }).then(function (credential) {
        return post("/account/passkeys", { name: name ? name.value : "", credential: credential.toJSON() });
      });
    },
    signin: function (box) {
      return post("/signin/passkey/options").then(function (options) {
        return navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey) });
      }).then(function (credential) {
        return post("/signin/passkey", { credential: credential.toJSON(), next: box.dataset.next || "/" });
      });
    },
    stepup: function (box) {
      return post("/step-up/passkey/options").then(function (options) {
        return navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey) });
      }).then(function (credential) {
        return post("/step-up/passkey", { credential: credential.toJSON(), next: box.dataset.next || "/" });
      });
    },
    factor: function (box) {
      return post("/signin/factor/passkey/options").then(function (options) {
        return navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey) });
      }).then(function (credential) {
        return post("/signin/factor/passkey", { credential: credential.toJSON(), next: box.dataset.next || "/" });
      });
    }
  };

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.PublicKeyCredential || !PublicKeyCredential.parseCreationOptionsFromJSON) { return; }
    document.querySelectorAll("[data-webauthn]").forEach(function (box) {
      var run = ceremonies[box.dataset.webauthn];
      var button = box.querySelector("button");
      var error = box.querySelector("[data-webauthn-error]");
      if (!run || !button) { return; }
      box.classList.remove("hidden");
      button.addEventListener("click", function () {
        button.disabled = true;
        error.textContent = "";
        run(box).then(function (result) {
          // A step-up before a form's action sends that form, as the user filled it.
          var pending = box.dataset.form && document.getElementById(box.dataset.form);
          if (pending) { pending.submit(); } else { window.location.assign(result.redirect); }
        }).catch(function (problem) {
          error.textContent = problem.message || String(problem);
          button.disabled = false;
        });
      });
    });
  });
})();
