//! The OpenAPI 3.1 description of the admin API, served at `/api/v1/openapi.json`.

use serde_json::{Value, json};

fn op(summary: &str, tag: &str, body: Option<&str>, ok: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "tags": [tag],
        "security": [{"adminToken": []}],
        "responses": {
            ok: {"description": "success", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
        }
    });
    if let Some(schema) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    }
    o
}

fn id_param() -> Value {
    json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}])
}

fn collection(tag: &str, schema: &str, noun: &str) -> (Value, Value) {
    (
        json!({
            "get": op(&format!("List {noun}s"), tag, None, "200"),
            "post": op(&format!("Create a {noun}"), tag, Some(schema), "201"),
        }),
        json!({
            "parameters": id_param(),
            "delete": op(&format!("Delete a {noun}"), tag, None, "204"),
        }),
    )
}

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (path, tag, schema, noun) in [
        ("orgs", "hierarchy", "NewOrg", "org"),
        ("teams", "hierarchy", "NewTeam", "team"),
        ("users", "hierarchy", "NewUser", "user"),
        ("devices", "hierarchy", "NewDevice", "device"),
        ("budgets", "limits", "NewBudget", "budget"),
        ("limits", "limits", "NewLimit", "rate limit"),
    ] {
        let (list, item) = collection(tag, schema, noun);
        paths.insert(format!("/api/v1/{path}"), list);
        paths.insert(format!("/api/v1/{path}/{{id}}"), item);
    }
    paths.insert(
        "/api/v1/keys".into(),
        json!({
            "get": op("List virtual keys (never their secrets)", "keys", None, "200"),
            "post": op("Create a virtual key; the response holds its secret, shown once", "keys", Some("NewKey"), "201"),
        }),
    );
    paths.insert(
        "/api/v1/keys/{id}".into(),
        json!({
            "parameters": id_param(),
            "get": op("Get a key", "keys", None, "200"),
            "patch": op("Change a key's name, status (active/blocked), expiry or policy", "keys", Some("KeyUpdate"), "200"),
            "delete": op("Delete a key", "keys", None, "204"),
        }),
    );
    paths.insert(
        "/api/v1/keys/{id}/rotate".into(),
        json!({
            "parameters": id_param(),
            "post": op("Issue a new secret; the old one works for grace_secs (default 86400)", "keys", Some("Rotate"), "200"),
        }),
    );
    for (path, noun, schema) in [
        ("providers", "provider", "Provider"),
        ("aliases", "alias", "Alias"),
    ] {
        paths.insert(
            format!("/api/v1/{path}"),
            json!({"get": op(&format!("List {path} in force (config file and admin API), with their source"), "routing", None, "200")}),
        );
        paths.insert(
            format!("/api/v1/{path}/{{name}}"),
            json!({
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "put": op(&format!("Create or replace a {noun}; validated with the whole configuration before it takes effect"), "routing", Some(schema), "200"),
                "delete": op(&format!("Delete a {noun} defined through the API (409 for one from the config file)"), "routing", None, "204"),
            }),
        );
    }
    let mut usage = op(
        "Requests, tokens and spend grouped by key, user, device, team, org, model, provider or app (optionally by day)",
        "reports",
        None,
        "200",
    );
    usage["parameters"] = json!([
        {"name": "group_by", "in": "query", "required": true, "schema": {"enum": ["key", "user", "device", "team", "org", "model", "provider", "app"]}},
        {"name": "by_day", "in": "query", "schema": {"type": "boolean"}},
        {"name": "from_ms", "in": "query", "schema": {"type": "integer"}},
        {"name": "to_ms", "in": "query", "schema": {"type": "integer"}},
    ]);
    paths.insert("/api/v1/usage".into(), json!({"get": usage}));
    let filters = json!([
        {"name": "key_id", "in": "query", "schema": {"type": "string"}},
        {"name": "user_id", "in": "query", "schema": {"type": "string"}},
        {"name": "device_id", "in": "query", "schema": {"type": "string"}},
        {"name": "team_id", "in": "query", "schema": {"type": "string"}},
        {"name": "org_id", "in": "query", "schema": {"type": "string"}},
        {"name": "model", "in": "query", "schema": {"type": "string"}},
        {"name": "provider", "in": "query", "schema": {"type": "string"}},
        {"name": "app", "in": "query", "schema": {"type": "string"}},
        {"name": "status", "in": "query", "schema": {"type": "integer"}},
        {"name": "from_ms", "in": "query", "schema": {"type": "integer"}},
        {"name": "to_ms", "in": "query", "schema": {"type": "integer"}},
        {"name": "after_seq", "in": "query", "description": "cursor: next_cursor of the previous page", "schema": {"type": "integer"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000}},
    ]);
    let mut page = op(
        "Audit records, oldest first, with cursor pagination",
        "audit",
        None,
        "200",
    );
    page["parameters"] = filters.clone();
    let mut export = op(
        "All matching audit records as JSON lines",
        "audit",
        None,
        "200",
    );
    export["parameters"] = filters;
    paths.insert("/api/v1/audit".into(), json!({"get": page}));
    paths.insert("/api/v1/audit/export".into(), json!({"get": export}));
    paths.insert(
        "/api/v1/audit/verify".into(),
        json!({"get": op("Walk the hash chain; names the first broken or missing record", "audit", None, "200")}),
    );

    let s = |props: Value, required: &[&str]| json!({"type": "object", "additionalProperties": false, "properties": props, "required": required});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Sluice admin API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"error": {"type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"}}}}
            }}}}},
            "schemas": {
                "NewOrg": s(json!({"name": {"type": "string"}, "id": {"type": "string"}}), &["name"]),
                "NewTeam": s(json!({"org_id": {"type": "string"}, "name": {"type": "string"}, "id": {"type": "string"}}), &["org_id", "name"]),
                "NewUser": s(json!({"team_id": {"type": "string"}, "email": {"type": "string"}, "name": {"type": "string"}, "id": {"type": "string"}}), &["team_id", "email"]),
                "NewDevice": s(json!({"team_id": {"type": "string"}, "hostname": {"type": "string"}, "user_id": {"type": "string"}, "id": {"type": "string"}}), &["team_id", "hostname"]),
                "KeyPolicy": s(json!({
                    "allow_models": {"type": "array", "items": {"type": "string"}},
                    "deny_models": {"type": "array", "items": {"type": "string"}},
                    "allow_providers": {"type": "array", "items": {"type": "string"}},
                    "deny_providers": {"type": "array", "items": {"type": "string"}},
                    "content_logging": {"enum": ["off", "metadata", "full"]},
                }), &[]),
                "NewKey": s(json!({
                    "name": {"type": "string"}, "user_id": {"type": "string"}, "device_id": {"type": "string"},
                    "team_id": {"type": "string"}, "expires_ms": {"type": "integer"},
                    "policy": {"$ref": "#/components/schemas/KeyPolicy"},
                }), &["name"]),
                "KeyUpdate": s(json!({
                    "name": {"type": "string"}, "status": {"enum": ["active", "blocked"]},
                    "expires_ms": {"type": ["integer", "null"]}, "policy": {"$ref": "#/components/schemas/KeyPolicy"},
                }), &[]),
                "Rotate": s(json!({"grace_secs": {"type": "integer"}}), &[]),
                "NewBudget": s(json!({
                    "scope_kind": {"enum": ["key", "user", "device", "team", "org"]}, "scope_id": {"type": "string"},
                    "window": {"enum": ["hour", "day", "week", "month"]}, "rolling": {"type": "boolean"},
                    "limit_usd": {"type": "number"}, "soft_fraction": {"type": "number"}, "id": {"type": "string"},
                }), &["scope_kind", "scope_id", "window", "limit_usd"]),
                "Provider": {"type": "object", "description": "the fields of a [providers.NAME] table: kind, base_url, keys [{value: \"env:VAR\", weight, id}], models, headers, api_version, ca_file (a path on the gateway host), connect_timeout_ms, header_timeout_ms, stream_idle_timeout_ms, max_concurrency, max_queue, queue_timeout_ms, max_retries, health", "required": ["kind"]},
                "Alias": {"type": "object", "properties": {
                    "targets": {"type": "array", "items": {"type": "object", "properties": {"model": {"type": "string"}, "weight": {"type": "number"}}, "required": ["model"]}},
                    "fallbacks": {"type": "array", "items": {"type": "string"}},
                }, "required": ["targets"]},
                "NewLimit": s(json!({
                    "scope_kind": {"enum": ["key", "team", "model"]}, "scope_id": {"type": "string"},
                    "rpm": {"type": "integer"}, "tpm": {"type": "integer"}, "concurrency": {"type": "integer"}, "id": {"type": "string"},
                }), &["scope_kind", "scope_id"]),
            }
        }
    })
}
