"""The operator panel shows a tenant's end and its deletion, and offers nothing to do to a deleted tenant."""

from __future__ import annotations

from tests.operator.conftest import make_operator, operator, panel, signed_in
from tests.operator.test_panel import row_of
from tests.tenant_deletion.conftest import ended_days_ago

__all__ = ["make_operator", "operator", "panel", "signed_in"]   # fixtures, found by pytest under these names


async def panel_row(browser, slug: str) -> str:
    await browser.get(f"/operator?q={slug}")
    return row_of(browser.last_body, slug)


async def test_the_panel_shows_the_end_then_the_deletion(cli, signed_in, admin, tenant):
    await ended_days_ago(cli, tenant, 35)
    row = await panel_row(signed_in, tenant.slug)
    assert "subscription ended" in row and "active" in row and "Suspend" in row

    assert await cli("tenant", "delete", tenant.slug) == 0
    row = await panel_row(signed_in, tenant.slug)
    assert "deleted (since" in row and "Deleted tenant" in row
    assert "Suspend" not in row and "Restore" not in row and "subscription ended" not in row

    chain = await admin.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1", tenant.id)
    response = await signed_in.post(f"/operator/tenants/{tenant.id}/suspend", {"reason": "late invoice"})
    assert response.status_code == 404
    assert await admin.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1", tenant.id) == chain
    assert await admin.fetchval("SELECT suspended_at FROM tenant WHERE id = $1", tenant.id) is None

    # Its kept chain can still be verified from the panel.
    response = await signed_in.post(f"/operator/tenants/{tenant.id}/verify", {})
    assert response.status_code == 303
    row = await panel_row(signed_in, tenant.slug)
    assert "intact" in row
