"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json.

Paths and schemas are written here once; limits, states and field names come
from the modules that enforce them, and who may call each operation (the
bearer token and the capabilities it must carry) is read from the app's own
guard marks when the document is built, so it says what the guard does.
tests/exceptions/test_api.py fails when a route under /api/ and this document
disagree, and checks real responses against these schemas.
"""

from __future__ import annotations

from quart import Quart

from app.audit import walk_limits
from app.exceptions import LABELS, REQUIRED, TEXT_LIMITS
from app.exceptions.query import DEFAULT_SORT, MAX_PER_PAGE, PER_PAGE, SEARCH_LIMIT, SORTS, STATES
from app.views.api import MAX_EVENTS
from app.views.exceptions_api import COMMENT_LIMIT, DRAFT_FIELDS
from app.web.guards import MEMBER, PUBLIC, access_rule

VERSION = "1.0.0"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str, **extra) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **extra}


def _errors(*statuses: int) -> dict:
    return {str(s): {"$ref": f"#/components/responses/{ERROR_RESPONSES[s][0]}"} for s in statuses}


def _nullable(kind: str, **more) -> dict:
    return {"type": [kind, "null"], **more}


UUID = {"type": "string", "format": "uuid"}
NULLABLE_UUID = _nullable("string", format="uuid")
DATE = {"type": "string", "format": "date"}
DATE_TIME = {"type": "string", "format": "date-time"}
STATE = _ref("State")
SCORE = {"type": "integer", "minimum": 1, "maximum": 5}
TENANT = {"$ref": "#/components/parameters/Tenant"}
EXCEPTION_ID = {"$ref": "#/components/parameters/ExceptionId"}

ERROR_RESPONSES = {
    400: ("BadRequest", "The request cannot be read: not JSON, not an object, or a bad parameter.", "Error"),
    401: ("Unauthorized", "No token, or an unknown, revoked or expired one, or no tenant named.", "Error"),
    403: ("Forbidden", "The token lacks a capability this needs, or the decision needs a person with a recent "
                       "second factor (a token can never step up).", "Error"),
    404: ("NotFound", "No such exception here, or the token's scope does not reach it.", "Error"),
    409: ("Conflict", "The exception's state does not allow this (for example a transition with no row allowing "
                      "it, or an edit of an exception under review).", "Error"),
    422: ("Unprocessable", "Named fields or parameters are wrong; `problems` says what each needs.", "Problems"),
    429: ("TooManyRequests", f"Too many long walks of this chain in the last hour: a check that recomputes more than "
                             f"{walk_limits.LONG_WALK:,} rows (every row with full=1, or a chain with no usable anchor "
                             f"or many rows after it) is allowed {walk_limits.PER_ASKER.hits} times an hour per client "
                             f"address and {walk_limits.PER_TENANT.hits} per tenant; Retry-After says when. Shorter "
                             "checks are not limited.", "Error"),
    503: ("Unavailable", "The database or file storage cannot be reached just now (restarting, for example); "
                         "Retry-After says when to try again. A change whose answer was lost may have been saved: "
                         "look before sending it again.", "Error"),
}
# Every operation that reads the database may answer 503 (app.web.unavailable); this document itself does not.
NO_DATABASE = {"openapi.document"}
RESPONSE_HEADERS = {
    401: {"WWW-Authenticate": {"description": 'Bearer realm="exceptao"', "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait at most before trying again", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}},
}

_SUMMARY = {
    "id": UUID,
    "title": {"type": "string"},
    "policy_ref": {"type": "string", "description": LABELS["policy_ref"]},
    "state": STATE,
    "likelihood": SCORE,
    "impact": SCORE,
    "rating": {"type": "integer", "minimum": 1, "maximum": 25, "description": "Residual risk: likelihood × impact"},
    "starts_on": DATE,
    "ends_on": DATE,
    "owner_id": UUID,
    "owner_name": {"type": "string"},
    "requester_id": UUID,
    "requester_name": {"type": "string"},
    "org_unit_id": {**NULLABLE_UUID, "description": "The org unit it belongs to; null: the whole organisation"},
    "predecessor_id": {**NULLABLE_UUID, "description": "The exception this one renews"},
    "updated_at": DATE_TIME,
}
_DETAIL = _SUMMARY | {
    "unit_name": _nullable("string"),
    "assets": {"type": "string", "description": LABELS["assets"]},
    "deviation": {"type": "string"},
    "justification": {"type": "string", "description": LABELS["justification"]},
    "compensating_controls": {"type": "string"},
    "approvals_needed": {"type": "integer", "enum": [1, 2],
                         "description": "Approvals the current review round needs (two by different people)"},
    "review_round": {"type": "integer", "minimum": 0, "description": "Each submission starts a new round"},
    "created_at": DATE_TIME,
    "events": {"type": "array", "items": _ref("ExceptionEvent"), "description": "The timeline, oldest first"},
    "renewal_chain": {"type": "array", "items": _ref("RenewalLink"),
                      "description": "This exception, what it renews back to the original, and its renewals; "
                                     "oldest first"},
}


def _draft_properties() -> dict:
    properties = {}
    for name in DRAFT_FIELDS:
        if name in TEXT_LIMITS:
            schema = {"type": ["string", "null"], "maxLength": TEXT_LIMITS[name]}
        elif name in ("likelihood", "impact"):
            schema = _nullable("integer", minimum=1, maximum=5)
        elif name == "owner":
            schema = _nullable("string", format="uuid", description="The user id of the person who owns the risk")
        else:
            schema = _nullable("string", format="date")
        properties[name] = {"title": LABELS[name], **schema}
    properties["ends_on"]["description"] = "After starts_on, within the tenant's maximum term (12 months unless set)"
    return properties


SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error", "message"],
        "properties": {"error": {"type": "string", "description": "The HTTP status in words"},
                       "message": {"type": "string", "description": "What happened and what to do, for a person"}},
    },
    "Problems": {
        "type": "object", "required": ["error", "message", "problems"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                       "problems": {"type": "object", "additionalProperties": {"type": "string"},
                                    "description": "Each wrong field or parameter, and what it needs"}},
    },
    "State": {"type": "string", "enum": list(STATES)},
    "ExceptionSummary": {"type": "object", "required": list(_SUMMARY), "properties": _SUMMARY},
    "Exception": {"type": "object", "required": list(_DETAIL), "properties": _DETAIL},
    "ExceptionList": {
        "type": "object", "required": ["exceptions", "total", "page", "per_page", "pages"],
        "properties": {"exceptions": {"type": "array", "items": _ref("ExceptionSummary")},
                       "total": {"type": "integer", "minimum": 0, "description": "How many match, on all pages"},
                       "page": {"type": "integer", "minimum": 1},
                       "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
                       "pages": {"type": "integer", "minimum": 1}},
    },
    "ExceptionEvent": {
        "type": "object",
        "required": ["at", "actor", "actor_name", "kind", "from_state", "to_state", "approval_level",
                     "review_round", "comment"],
        "properties": {
            "at": DATE_TIME,
            "actor": {"type": "string", "description": "user:<uuid>, or system:<job> for the scheduler"},
            "actor_name": _nullable("string"),
            "kind": {"type": "string", "enum": ["transition", "approval", "attestation", "reminder", "edit"]},
            "from_state": {"oneOf": [STATE, {"type": "null"}]},
            "to_state": {"oneOf": [STATE, {"type": "null"}]},
            "approval_level": _nullable("integer", enum=[1, 2, None]),
            "review_round": _nullable("integer"),
            "comment": _nullable("string"),
        },
    },
    "RenewalLink": {
        "type": "object", "required": ["id", "title", "state", "starts_on", "ends_on"],
        "properties": {"id": UUID, "title": {"type": "string"}, "state": STATE, "starts_on": DATE, "ends_on": DATE},
    },
    "DraftNew": {
        "type": "object", "additionalProperties": False, "properties": _draft_properties(),
        "required": [*REQUIRED, "likelihood", "impact", "starts_on", "ends_on", "owner"],
    },
    "DraftChanges": {
        "type": "object", "additionalProperties": False, "properties": _draft_properties(),
        "description": "Only the fields to change; the others keep their values",
    },
    "TransitionRequest": {
        "type": "object", "additionalProperties": False, "required": ["to"],
        "properties": {"to": STATE,
                       "comment": _nullable("string", maxLength=COMMENT_LIMIT,
                                            description="Required for every decision: say why")},
    },
    "TransitionOutcome": {
        "type": "object", "required": ["exception_id", "from_state", "state", "approval_level", "approvals_needed"],
        "properties": {
            "exception_id": UUID, "from_state": STATE,
            "state": {**STATE, "description": "The state now: still UNDER_REVIEW after the first of two approvals"},
            "approval_level": _nullable("integer", enum=[1, 2, None], description="The approval given, if one was"),
            "approvals_needed": {"type": "integer", "enum": [1, 2]},
        },
    },
    "Me": {
        "type": "object", "required": ["tenant", "user", "token", "scope", "capabilities"],
        "properties": {
            "tenant": {"type": "string", "description": "The tenant's slug"},
            "user": {"type": "object", "required": ["id", "email"],
                     "properties": {"id": UUID, "email": {"type": "string"}}},
            "token": {"type": "object", "required": ["id", "name", "hint", "capabilities", "scope_unit_id",
                                                     "expires_at"],
                      "properties": {"id": UUID, "name": {"type": "string"}, "hint": {"type": "string"},
                                     "capabilities": {"type": "array", "items": {"type": "string"}},
                                     "scope_unit_id": NULLABLE_UUID, "expires_at": DATE_TIME}},
            "scope": {"type": "object", "required": ["org_unit_id", "label"],
                      "properties": {"org_unit_id": NULLABLE_UUID, "label": {"type": "string"}}},
            "capabilities": {"type": "array", "items": {"type": "string"},
                             "description": "What this token may do now: its own capabilities that its owner still "
                                            "holds in its scope"},
        },
    },
    "AuditEvents": {
        "type": "object", "required": ["events", "next_after"],
        "properties": {"events": {"type": "array", "items": _ref("AuditEvent")},
                       "next_after": _nullable("integer", description="Pass as `after` for the next rows")},
    },
    "AuditEvent": {
        "type": "object",
        "required": ["seq", "at", "actor", "action", "target", "data", "pii", "hash_v", "prev_hash", "row_hash"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "at": {"type": "string", "description": "UTC, microseconds: YYYY-MM-DDTHH:MM:SS.ffffffZ"},
            "actor": {"type": "string"}, "action": {"type": "string", "description": "<domain>:<subject>:<verb>"},
            "target": {"type": ["object", "null"], "required": ["type", "id"],
                       "properties": {"type": {"type": "string"}, "id": {"type": "string"}}},
            "data": {}, "pii": _nullable("string", description="Hex SHA-256 commitment to the personal data"),
            "hash_v": {"type": "integer"}, "prev_hash": {"type": "string"},
            "row_hash": {"type": "string", "description": "Hex SHA-256(prev_hash || UTF-8(JCS(record)))"},
        },
    },
    "Verdict": {
        "type": "object", "required": ["ok", "total_rows", "head", "last_anchor_at", "broken_at"],
        "properties": {"ok": {"type": "boolean"}, "total_rows": {"type": "integer", "minimum": 0},
                       "head": _nullable("string"), "last_anchor_at": _nullable("string"),
                       "broken_at": _nullable("integer", description="The first seq that fails"),
                       "reason": {"type": "string", "description": "Why the chain is broken (only when it is)"},
                       "mode": {"type": "string", "enum": ["from_anchor", "full"],
                                "description": "Walked from the latest usable anchor, or every row"},
                       "checked_from": {"type": "integer", "minimum": 1, "description": "The first seq walked"},
                       "erased_rows": {"type": "integer", "minimum": 0,
                                       "description": "Rows whose personal data was erased (not broken)"},
                       "anchor": {"type": ["object", "null"], "description": "The latest anchor and its token's "
                                  "status: verified, signature_not_checked (no authority certificate "
                                  "configured) or invalid"}},
    },
    "PublicChains": {
        "type": "object", "required": ["tenants"],
        "properties": {"tenants": {"type": "array", "items": {
            "type": "object", "required": ["slug", "total_rows", "head", "last_anchor_at"],
            "properties": {"slug": {"type": "string"}, "total_rows": {"type": "integer", "minimum": 0},
                           "head": _nullable("string"), "last_anchor_at": _nullable("string")}}}},
    },
}


def _query(name: str, schema: dict, description: str, **extra) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description, **extra}


FILTERS = [
    _query("state", {"type": "array", "items": STATE}, "Any of these states (repeat the parameter)",
           style="form", explode=True),
    _query("owner", UUID, "Owned by this user"),
    _query("expiring_within", {"type": "integer", "minimum": 0, "maximum": 3660},
           "Approved or in force, ending within this many days"),
    _query("rating_min", {"type": "integer", "minimum": 1, "maximum": 25}, "Residual-risk rating at least"),
    _query("rating_max", {"type": "integer", "minimum": 1, "maximum": 25}, "Residual-risk rating at most"),
    _query("q", {"type": "string", "maxLength": SEARCH_LIMIT}, "Words in the title, policy, assets or deviation"),
    _query("sort", {"type": "string", "enum": [*SORTS, *(f"-{s}" for s in SORTS)], "default": DEFAULT_SORT},
           "The order; a leading '-' descends"),
    _query("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1}, "Which page"),
    _query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": PER_PAGE},
           "Exceptions per page"),
]
AUTHENTICATED_ERRORS = (401, 403)

PATHS = {
    "/api/me": {"get": {
        "operationId": "api.me", "tags": ["tokens"], "summary": "Who this token speaks for, and what it may do now",
        "parameters": [TENANT],
        "responses": {"200": _json(_ref("Me"), "The token, its owner and its capabilities now"),
                      **_errors(*AUTHENTICATED_ERRORS)}}},
    "/api/audit/events": {"get": {
        "operationId": "api.audit_events", "tags": ["audit"],
        "summary": "The tenant's audit chain in order, to re-hash offline",
        "parameters": [TENANT,
                       _query("after", {"type": "integer", "minimum": 0, "default": 0}, "Rows after this seq"),
                       _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_EVENTS,
                                        "default": MAX_EVENTS}, "At most this many rows")],
        "responses": {"200": _json(_ref("AuditEvents"), "Chain rows"), **_errors(400, *AUTHENTICATED_ERRORS)}}},
    "/api/audit/verify": {"get": {
        "operationId": "audit_api.verify", "tags": ["audit"],
        "summary": "Verify the tenant's audit chain (public: anyone can check it)",
        "parameters": [TENANT, _query("full", {"type": "string", "enum": ["1", "true", "yes"]},
                                      "Walk every row; by default only the rows after the latest anchor")],
        "responses": {"200": _json(_ref("Verdict"), "The chain is intact"),
                      "422": _json(_ref("Verdict"), "The chain is broken at `broken_at`"),
                      "404": _json(_ref("Error"), "No tenant named, or no such tenant"),
                      **_errors(429)}}},
    "/api/audit/public": {"get": {
        "operationId": "audit_api.public", "tags": ["audit"],
        "summary": "Chain size and head of the tenants that publish them",
        "responses": {"200": _json(_ref("PublicChains"), "One entry per publishing tenant")}}},
    "/api/openapi.json": {"get": {
        "operationId": "openapi.document", "tags": ["api"], "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "The OpenAPI 3.1 description of the JSON API")}}},
    "/api/exceptions": {
        "get": {
            "operationId": "exceptions_api.list_exceptions_api", "tags": ["exceptions"],
            "summary": "List exceptions with the list screen's filters, one page at a time",
            "description": "Unknown parameters are refused (422) rather than ignored, so a typo never widens "
                           "a filter.",
            "parameters": [TENANT, *FILTERS],
            "responses": {"200": _json(_ref("ExceptionList"), "One page of matching exceptions"),
                          **_errors(*AUTHENTICATED_ERRORS, 422)}},
        "post": {
            "operationId": "exceptions_api.create_exception_api", "tags": ["exceptions"],
            "summary": "Create a DRAFT requested by the token's owner, in the token's scope",
            "parameters": [TENANT],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("DraftNew")}}},
            "responses": {"201": _json(_ref("Exception"), "The new draft", headers={"Location": {
                              "description": "The new exception's URL", "schema": {"type": "string"}}}),
                          **_errors(400, *AUTHENTICATED_ERRORS, 422)}},
    },
    "/api/exceptions/{exception_id}": {
        "parameters": [EXCEPTION_ID],
        "get": {
            "operationId": "exceptions_api.get_exception_api", "tags": ["exceptions"],
            "summary": "One exception with every field, its timeline and its renewal chain",
            "parameters": [TENANT],
            "responses": {"200": _json(_ref("Exception"), "The exception"),
                          **_errors(*AUTHENTICATED_ERRORS, 404)}},
        "patch": {
            "operationId": "exceptions_api.edit_exception_api", "tags": ["exceptions"],
            "summary": "Edit a DRAFT or RETURNED exception (its requester only); fields not sent keep their values",
            "parameters": [TENANT],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("DraftChanges")}}},
            "responses": {"200": _json(_ref("Exception"), "The exception as saved"),
                          **_errors(400, *AUTHENTICATED_ERRORS, 404, 409, 422)}},
    },
    "/api/exceptions/{exception_id}/transitions": {
        "parameters": [EXCEPTION_ID],
        "post": {
            "operationId": "exceptions_api.transition_exception_api", "tags": ["exceptions"],
            "summary": "Ask for a transition, such as submitting a draft or returning it with a comment",
            "description": "The tenant's transition rows decide whether it is allowed, for whom, and whether a "
                           "comment is required. A decision that needs a recent second factor (approving, "
                           "rejecting, revoking) is refused to tokens with 403: a person decides it on the web.",
            "parameters": [TENANT],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("TransitionRequest")}}},
            "responses": {"200": _json(_ref("TransitionOutcome"), "The transition was made"),
                          **_errors(400, *AUTHENTICATED_ERRORS, 404, 409, 422)}},
    },
}


def _guarded(operation: dict, app: Quart) -> dict:
    """The operation with who may call it, as the guard on its view says."""
    view = app.view_functions.get(operation["operationId"])
    rule = access_rule(operation["operationId"], view) if view else None
    operation = dict(operation)
    if operation["operationId"] not in NO_DATABASE:
        operation["responses"] = {**operation["responses"], **_errors(503)}
    if rule == PUBLIC:
        operation["security"] = []
    elif rule and rule != MEMBER:
        operation["x-required-capabilities"] = list(rule)
        operation["description"] = (operation.get("description", "") + "\n\nThe token must carry: "
                                    + ", ".join(rule) + ".").strip()
    return operation


def document(app: Quart) -> dict:
    paths = {path: {key: _guarded(value, app) if key != "parameters" else value for key, value in item.items()}
             for path, item in PATHS.items()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Exceptao API", "version": VERSION,
            "description": "Policy exceptions on the record. Sign in with a personal API token "
                           "(`Authorization: Bearer exo_pat_…`, made on the account page); name the tenant with "
                           "the X-Tenant header or its host name. A token carries some of its owner's "
                           "capabilities, in the scope it was made for. Errors are JSON with a message a person "
                           "can act on.",
        },
        "servers": [{"url": "/", "description": "This host"}],
        "security": [{"token": []}],
        "tags": [{"name": "exceptions"}, {"name": "audit"}, {"name": "tokens"}, {"name": "api"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer", "bearerFormat": "exo_pat_…",
                                          "description": "A personal API token"}},
            "parameters": {
                "Tenant": {"name": "X-Tenant", "in": "header", "required": False, "schema": {"type": "string"},
                           "description": "The tenant's slug, when the host name does not say it"},
                "ExceptionId": {"name": "exception_id", "in": "path", "required": True, "schema": UUID},
            },
            "schemas": SCHEMAS,
            "responses": {name: _json(_ref(schema), description,
                                      **({"headers": RESPONSE_HEADERS[status]} if status in RESPONSE_HEADERS else {}))
                          for status, (name, description, schema) in ERROR_RESPONSES.items()},
        },
    }
