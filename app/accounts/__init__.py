"""Accounts: passwords, sessions, second factors, throttling. Views live in app.views.auth and app.views.account."""
