"""Making the things evidence attaches to, and reading what an upload left behind."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from uuid import UUID

from app import access, risks
from app.db import tenant_transaction
from tests.exceptions.test_screens import drafted

CARD = "4111 1111 1111 1111"                 # a Visa test number: issuer range and Luhn hold
PESEL = "44051401359"
IBAN = "PL61 1090 1014 0000 0712 1981 2874"
SENSITIVE = f"Payment card {CARD}, PESEL {PESEL}, account {IBAN}.\n".encode()
CLEAN = b"Firewall rule export, 2026-11-01: allow 203.0.113.7 to ftp01 port 21. Ticket CHG-1234-5678.\n"


async def an_exception(pool, tenant, team, who: str = "Rhea") -> str:
    return f"/exceptions/{await drafted(pool, tenant, team, who)}"


async def a_risk(pool, tenant, team, who: str = "Olga") -> str:
    async with tenant_transaction(pool, tenant.id) as conn:
        by = await access.load(conn, team[who].id)
        risk_id = await risks.create(conn, tenant.id, by, {
            "title": "Unpatched VPN appliance", "description": "", "likelihood": "3", "impact": "4",
            "owner": str(team[who].id), "treatment": "mitigate",
            "review_on": (date.today() + timedelta(days=30)).isoformat()})
    return f"/risks/{risk_id}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def evidence_id_from(response) -> UUID:
    assert response.status_code == 303, response.status_code
    location = response.headers["Location"]
    assert location.startswith("/evidence/") and "/details" in location, location
    return UUID(location.split("/")[2])


async def rows(admin, tenant) -> list:
    return await admin.fetch("SELECT * FROM evidence WHERE tenant_id = $1 ORDER BY uploaded_at", tenant.id)


async def audit_actions(admin, tenant, prefix: str = "evidence:") -> list:
    return await admin.fetch("SELECT action, target_type, target_id, data FROM audit_log"
                             " WHERE tenant_id = $1 AND action LIKE $2 ORDER BY seq", tenant.id, prefix + "%")


def stored_objects(root) -> list:
    """Files in a local store, outside its incoming folder."""
    return sorted(p for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)


async def set_policy(admin, tenant, policy: str) -> None:
    await admin.execute(
        "INSERT INTO evidence_settings (tenant_id, dlp_policy) VALUES ($1, $2)"
        " ON CONFLICT (tenant_id) DO UPDATE SET dlp_policy = excluded.dlp_policy", tenant.id, policy)


def zip_bomb() -> bytes:
    """A DOCX-shaped ZIP of 30 kB whose document part expands to 30 MB."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml",
                   '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                   '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
                   'officedocument.wordprocessingml.document.main+xml"/></Types>')
        z.writestr("word/document.xml", b"<" + b"a" * (30 * 1024 * 1024) + b"/>")
    return buffer.getvalue()


MALFORMED_PDF = b"%PDF-1.7\n1 0 obj << /Length 50 /Filter /FlateDecode >> stream\nnot zlib at all\nendstream endobj\n"


def nothing_left(settings) -> bool:
    """No object in the local store and no spool file: what a refused or interrupted upload must leave."""
    spool = settings.data_dir / "spool"
    return stored_objects(settings.storage_dir) == [] and (not spool.exists() or list(spool.iterdir()) == [])
