"""The API's OpenAPI 3.1 description (served at /v1/openapi.json)."""

from __future__ import annotations

from api.verify import MAX_CODES, STATUSES
from warehouse.linkage.pack_codes import REASONS

_NULLABLE_STR = {"type": ["string", "null"]}

PACK = {
    "type": "object",
    "required": ["code", "valid", "status"],
    "properties": {
        "code": {"type": ["string", "null"], "description": "the code as sent"},
        "valid": {"type": "boolean", "description": "the code parses as a GS1, NMPA or NDC code"},
        "reason": {"type": ["string", "null"], "enum": [*REASONS, None], "description": "why the code is not valid"},
        "reason_text": _NULLABLE_STR,
        "system": {"type": ["string", "null"], "enum": ["gs1", "nmpa", "ndc", None]},
        "gtin": _NULLABLE_STR,
        "nmpa_drug_code": _NULLABLE_STR,
        "ndc": _NULLABLE_STR,
        "lot": _NULLABLE_STR,
        "serial": _NULLABLE_STR,
        "expiry": {"type": ["string", "null"], "format": "date"},
        "product_id": _NULLABLE_STR,
        "product_name": _NULLABLE_STR,
        "manufacturer": _NULLABLE_STR,
        "batch_id": _NULLABLE_STR,
        "batch_lot": _NULLABLE_STR,
        "batch_expiry": {"type": ["string", "null"], "format": "date"},
        "status": {
            "type": ["string", "null"],
            "enum": [*STATUSES, None],
            "description": "EU FMD / NMVS-style pack status (null when the code is not valid)",
        },
        "level": {"type": ["string", "null"], "enum": ["pack", "batch", "product", None]},
        "detail": {
            "type": ["string", "null"],
            "enum": ["unknown_product", "unknown_serial", "unknown_lot", "no_serial", None],
        },
        "conditions": {"type": "array", "items": {"type": "string"}},
        "trace": {"$ref": "#/components/schemas/Trace"},
        "safety": {"$ref": "#/components/schemas/Safety"},
    },
}

TRACE = {
    "type": "object",
    "properties": {
        "journey": {"type": "array", "items": {"type": "object"}},
        "route_basis": {"type": ["string", "null"], "enum": ["dispensing_region", "all_consignments", None]},
        "cold_chain": {"type": ["object", "null"]},
    },
}
SAFETY = {
    "type": "object",
    "properties": {
        "jurisdiction": {"type": "string"},
        "signals": {"type": "array", "items": {"type": "object"}},
        "alerts": {"type": "array", "items": {"type": "object"}},
        "withheld_signals": {"type": "integer"},
        "recall_status": _NULLABLE_STR,
    },
}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _errors(*codes: int) -> dict:
    text = {
        400: "malformed request",
        401: "missing or unknown key",
        403: "the client lacks the scope",
        404: "not found",
        413: "request too large",
        429: "rate limit exceeded (Retry-After)",
        503: "no warehouse snapshot yet (Retry-After)",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


_PACK_RESPONSE = {
    "200": {
        "description": "the pack's verification (with trace / safety when the client has those scopes)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pack"}}},
    },
    **_errors(401, 403, 429, 503),
}


def _resolver(path: str, params: list[str]) -> dict:
    names = {"gtin": "GTIN (AI 01), 8 to 14 digits", "lot": "lot (AI 10)", "serial": "serial (AI 21)"}
    return {
        "get": {
            "summary": "GS1 Digital Link resolver: the same JSON as /v1/packs/{code}",
            "operationId": "resolve_" + "_".join(params),
            "security": [{"bearer": []}],
            "parameters": [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}, "description": names[p]}
                for p in params
            ]
            + [
                {
                    "name": "17",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "expiry YYMMDD (AI 17)",
                }
            ],
            "responses": _PACK_RESPONSE,
        }
    }


OPENAPI = {
    "openapi": "3.1.0",
    "info": {
        "title": "PV Trace verification API",
        "version": "1.0.0",
        "description": "Verify any pack code (NMPA 20-digit, GS1 element string / HRI / Digital Link, NDC), "
        "see its batch, journey and safety status. Authorization: Bearer <client key>.",
    },
    "servers": [{"url": "/"}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Pack": PACK, "Trace": TRACE, "Safety": SAFETY, "Error": ERROR},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/packs/{code}": {
            "get": {
                "summary": "Verify one pack code (URL-encoded)",
                "operationId": "get_pack",
                "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": _PACK_RESPONSE,
            }
        },
        "/v1/verify": {
            "post": {
                "summary": f"Verify up to {MAX_CODES:,} codes (verification fields only)",
                "operationId": "verify",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["codes"],
                                "properties": {
                                    "codes": {
                                        "type": "array",
                                        "maxItems": MAX_CODES,
                                        "items": {"type": ["string", "null"]},
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "one answer per code, in order",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Pack"}},
                                        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                                        "snapshot_taken_at": {"type": ["string", "null"]},
                                    },
                                }
                            }
                        },
                    },
                    **_errors(400, 401, 403, 413, 429, 503),
                },
            }
        },
        "/v1/batches/{batch_id}/events": {
            "get": {
                "summary": "The batch's supply events as an EPCIS 2.0 JSON-LD document (scope trace)",
                "operationId": "batch_events",
                "parameters": [{"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "EPCIS 2.0 document",
                        "content": {"application/ld+json": {"schema": {"type": "object"}}},
                    },
                    **_errors(401, 403, 404, 429, 503),
                },
            }
        },
        "/01/{gtin}": _resolver("/01/{gtin}", ["gtin"]),
        "/01/{gtin}/10/{lot}": _resolver("/01/{gtin}/10/{lot}", ["gtin", "lot"]),
        "/01/{gtin}/21/{serial}": _resolver("/01/{gtin}/21/{serial}", ["gtin", "serial"]),
        "/01/{gtin}/10/{lot}/21/{serial}": _resolver("/01/{gtin}/10/{lot}/21/{serial}", ["gtin", "lot", "serial"]),
        "/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
            }
        },
    },
}
