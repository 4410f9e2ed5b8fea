"""The operator panel's domain: platform operators, their sessions, and what they do to tenants.

Operators are not tenant users. They sign in on the bare base domain with
email, password and a TOTP code every time, work through the operator
database role (its own pool, `app.extensions["operator_pool"]`), and every
change they make to a tenant is recorded in that tenant's chain with actor
`operator:<uuid>`.
"""
