"""The OpenAPI 3.1 document of the ``certscan serve`` JSON API (written by hand, served at
``/api/v1/openapi.json``)."""

from __future__ import annotations

from typing import Any

from scanner import __version__
from scanner.inventory.shards import SHARD_STATUSES as _SHARD_STATES

__all__ = ["openapi_document"]

_ERROR = {
    "description": "Bad request",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _path(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _ok(description: str, ref: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"$ref": f"#/components/schemas/{ref}"} if ref else {"type": "object"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(
    summary: str, ok: dict[str, Any], params: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    responses = {"200": ok, "400": _ERROR, "404": _ERROR | {"description": "Not found"}}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    return {"get": op}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document."""
    severity = {"type": "string", "enum": ["info", "low", "medium", "high", "critical"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "certscan serve",
            "version": __version__,
            "description": "The certscan inventory, findings, scans and scan jobs. Read-only "
            "except POST /api/v1/jobs/{name}/run, which starts a job named in the config "
            "(never an arbitrary target) and needs the bearer token.",
        },
        "paths": {
            "/api/v1/endpoints": _get(
                "Every endpoint's latest observation, soonest leaf expiry first",
                _ok("A page of endpoints", "EndpointPage"),
                [
                    _query(
                        "limit",
                        "Endpoints per page",
                        {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
                    ),
                    _query(
                        "offset",
                        "Endpoints to skip (reads the whole inventory; prefer cursor)",
                        {"type": "integer", "minimum": 0, "default": 0},
                    ),
                    _query(
                        "cursor",
                        "Keyset pages in endpoint order: '' for the first, then next_cursor",
                        {"type": "string", "pattern": "^[0-9]{0,19}$"},
                    ),
                ],
            ),
            "/api/v1/certificates/{sha256}": _get(
                "A certificate some endpoint presents now, and where",
                _ok("The certificate and its endpoints"),
                [
                    _path(
                        "sha256",
                        "SHA-256 of the DER, hex",
                        {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                    )
                ],
            ),
            "/api/v1/findings": _get(
                "Findings of the latest observations, judged now with the configured policy",
                _ok("Findings", "Findings"),
                [
                    _query("severity", "Only findings at or above this severity", severity),
                    _query(
                        "kind",
                        "Only findings of this kind (repeatable, or a,b)",
                        {"type": "string"},
                    ),
                    _query(
                        "expiring_within",
                        "Only endpoints with a certificate expiring within 30d, 12h, 2w",
                        {"type": "string", "pattern": "^[0-9]{1,6}[hdwHDW]$"},
                    ),
                ],
            ),
            "/api/v1/summary": _get(
                "The estate by owner, issuer, key type, TLS version and lifetime, the share "
                "that looks automated, and the trend over the last scans (certscan summary)",
                _ok("The summary"),
                [
                    _query(
                        "scans",
                        "Scans in the trend",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
                    )
                ],
            ),
            "/api/v1/scans": _get(
                "The newest scans, newest first",
                _ok("Scans", "ScanList"),
                [
                    _query(
                        "limit",
                        "How many",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20},
                    )
                ],
            ),
            "/api/v1/scans/{scan_id}": _get(
                "One scan and its status",
                _ok("The scan", "Scan"),
                [_path("scan_id", "Scan id", {"type": "integer", "minimum": 0})],
            ),
            "/api/v1/scans/{scan_id}/shards": _get(
                "The shards of a scan, by number (an empty list: the scan is not sharded)",
                _ok("The shards", "ShardList"),
                [_path("scan_id", "Scan id", {"type": "integer", "minimum": 0})],
            ),
            "/api/v1/jobs": _get("The configured scan jobs and their state", _ok("Jobs")),
            "/api/v1/changes": _get(
                "What changed between scans: new, gone and back endpoints, certificate changes "
                "(old and new sha256, issuer_changed, key_changed)",
                _ok("Changes"),
                [_query("since", "How far back (30d, 12h, 2w; default 7d)", {"type": "string"})],
            ),
            "/api/v1/jobs/{name}/run": {
                "post": {
                    "summary": "Start a configured job now",
                    "security": [{"bearer": []}],
                    "parameters": [_path("name", "Job name from the config", {"type": "string"})],
                    "responses": {
                        "202": _ok("Started"),
                        "401": _ERROR | {"description": "Missing or wrong token"},
                        "403": _ERROR | {"description": "No token configured"},
                        "404": _ERROR | {"description": "No such job"},
                        "409": _ERROR | {"description": "The job is running"},
                    },
                }
            },
            "/api/v1/hooks/runs": _get(
                "The newest 100 hook runs; deployment says on how many of the endpoints that "
                "served the old certificate a renewal is served (null until verified)",
                _ok("Hook runs"),
            ),
            "/api/v1/hooks/runs/{run_id}/{decision}": {
                "post": {
                    "summary": "Approve or reject a pending hook run (hooks with approval = true)",
                    "security": [{"bearer": []}],
                    "parameters": [
                        _path("run_id", "Hook run id (hooks history)", {"type": "integer"}),
                        _path("decision", "approve or reject", {"enum": ["approve", "reject"]}),
                    ],
                    "responses": {
                        "200": _ok("Decided"),
                        "400": _ERROR | {"description": "Bad run id"},
                        "401": _ERROR | {"description": "Missing or wrong token"},
                        "403": _ERROR | {"description": "No token configured"},
                        "404": _ERROR | {"description": "No pending run with this id"},
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "EndpointPage": {
                    "type": "object",
                    "properties": {
                        "total": {"type": "integer"},
                        "offset": {"type": "integer"},
                        "next_cursor": {"type": ["string", "null"]},
                        "endpoints": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "Findings": {
                    "type": "object",
                    "properties": {"findings": {"type": "array", "items": {"type": "object"}}},
                },
                "Scan": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "status": {
                            "type": "string",
                            "enum": ["running", "finished", "interrupted", "failed"],
                        },
                        "started_at": {"type": "string", "format": "date-time"},
                        "finished_at": {"type": ["string", "null"], "format": "date-time"},
                        "total": {"type": "integer"},
                        "done": {"type": "integer"},
                        "ok": {"type": "integer"},
                        "failed": {"type": "integer"},
                        "version": {"type": "string"},
                        "shards": {
                            "type": ["integer", "null"],
                            "minimum": 1,
                            "description": "How many shards; null: the scan is not sharded",
                        },
                        "shard_states": {
                            "type": ["object", "null"],
                            "description": "Shards per state; null: the scan is not sharded",
                            "properties": {state: {"type": "integer"} for state in _SHARD_STATES},
                            "additionalProperties": {"type": "integer"},
                        },
                    },
                },
                "ScanList": {
                    "type": "object",
                    "required": ["scans"],
                    "properties": {
                        "scans": {"type": "array", "items": {"$ref": "#/components/schemas/Scan"}}
                    },
                },
                "Shard": _shard_schema(),
                "ShardList": {
                    "type": "object",
                    "required": ["scan_id", "shards"],
                    "properties": {
                        "scan_id": {"type": "integer"},
                        "shards": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Shard"},
                        },
                    },
                },
            },
        },
    }


def _shard_schema() -> dict[str, Any]:
    """One ``scan_shard`` row (``scanner.cli.scans.shard_dict``)."""
    time = {"type": "string", "format": "date-time"}
    maybe_time = {"type": ["string", "null"], "format": "date-time"}
    maybe_text = {"type": ["string", "null"]}
    count = {"type": "integer", "minimum": 0}
    properties: dict[str, Any] = {
        "scan_id": {"type": "integer"},
        "shard": count,
        "status": {"type": "string", "enum": list(_SHARD_STATES)},
        "zone": maybe_text,
        "total": count,
        "watermark": count,
        "done": count,
        "ok": count,
        "failed": count,
        "attempts": count,
        "attempt": maybe_text,
        "attempt_started_at": maybe_time,
        "agent": maybe_text,
        "error": maybe_text,
        "queued_at": time,
        "started_at": maybe_time,
        "finished_at": maybe_time,
        "updated_at": time,
    }
    return {"type": "object", "required": list(properties), "properties": properties}
