//! `GET /openapi.json`: an OpenAPI 3.1 description of the public API and the admin API.
//!
//! Made for the config in force: the `model` a request names is one of its public models, the
//! apps and workflows are its own. Schemas with a Rust type behind them are generated from it
//! by `schemars` (the error envelope, the model list, the admin API's key bodies and the
//! limits and budgets in them); the vendor wire formats the gateway reads with its own parsers
//! (chat, messages, responses) are written out here, open to the fields vendors add.
//! The console's `/console/api/*` is its own, not an API, and is left out.

use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::config::Config;

/// Component schemas generated from Rust types (Error, ErrorBody, Model, ModelList,
/// KeyFields, Rotation and what they use), each under its own name.
fn generated() -> Map<String, Value> {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.definitions_path = "#/components/schemas/".into();
    let mut generator: SchemaGenerator = settings.into_generator();
    generator.subschema_for::<crate::error::Envelope>();
    generator.subschema_for::<crate::api::models::List>();
    generator.subschema_for::<crate::proxy::UnifiedCall>();
    super::keys::register_schemas(&mut generator);
    generator.take_definitions(true)
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// The answers every public operation may give: its own 200, and errors in `error`'s shape.
fn answers(ok: Value, error: &str) -> Value {
    json!({
        "200": ok,
        "4XX": {"description": "The request was refused (bad input, key, model, limits).", "content": {"application/json": {"schema": schema_ref(error)}}},
        "5XX": {"description": "No vendor could answer (gateway-made; nothing of the vendor's leaks).", "content": {"application/json": {"schema": schema_ref(error)}}},
    })
}

fn json_ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// A reply that is JSON, or an event stream when the body asks for `stream: true`.
fn json_or_stream(description: &str, schema: Value) -> Value {
    let event = json!({
        "description": "Each event's data: a JSON object (a chunk, an event), or [DONE] ending a Chat Completions stream.",
        "anyOf": [{"type": "object"}, {"const": "[DONE]"}],
    });
    json!({"description": description, "content": {
        "application/json": {"schema": schema},
        "text/event-stream": {"schema": event},
    }})
}

/// `POST /v1/apps/{name}/completions` for each app: its variables, versions and labels.
fn app_paths(config: &Config, paths: &mut Map<String, Value>) {
    for (name, app) in &config.apps.by_name {
        let mut variables: Vec<String> = Vec::new();
        for v in app.versions.iter().flat_map(|v| v.variables()) {
            if !variables.contains(&v) {
                variables.push(v);
            }
        }
        let properties: Map<String, Value> = variables
            .iter()
            .map(|v| {
                (
                    v.clone(),
                    json!({"type": "string", "minLength": 1, "maxLength": 4000}),
                )
            })
            .collect();
        let versions: Vec<u32> = app.versions.iter().map(|v| v.version).collect();
        let labels: Vec<&String> = app.labels.keys().collect();
        let body = json!({"type": "object", "required": ["variables"], "properties": {
            "variables": {"type": "object", "required": variables, "properties": properties},
            "version": {"type": "integer", "enum": versions},
            "label": {"type": "string", "enum": labels},
            "stream": {"type": "boolean"},
        }});
        let summary = format!("The prompt app `{name}`: {}", app.description);
        let op = operation(
            "apps",
            &summary,
            Some(json_body(body)),
            answers(
                json_or_stream("The answer.", schema_ref("ChatCompletion")),
                "Error",
            ),
        );
        paths.insert(format!("/v1/apps/{name}/completions"), json!({"post": op}));
    }
}

/// `POST /v1/workflows/{name}/run` for each workflow: its inputs, typed.
fn workflow_paths(config: &Config, paths: &mut Map<String, Value>) {
    use crate::flows::workflow::InputType;
    for (name, wf) in &config.workflows.by_name {
        let properties: Map<String, Value> = wf
            .inputs
            .iter()
            .map(|(input, kind)| {
                let schema = match kind {
                    InputType::String => json!({"type": "string", "maxLength": 4000}),
                    InputType::Number => json!({"type": "number"}),
                    InputType::Boolean => json!({"type": "boolean"}),
                };
                (input.clone(), schema)
            })
            .collect();
        let required: Vec<&String> = wf.inputs.keys().collect();
        let body = json!({"type": "object", "required": ["inputs"], "properties": {
            "inputs": {"type": "object", "required": required, "properties": properties},
            "stream": {"type": "boolean"},
        }});
        let summary = format!("The workflow `{name}`: {}", wf.description);
        let op = operation(
            "workflows",
            &summary,
            Some(json_body(body)),
            answers(
                json_or_stream("The run's outputs, or its events.", schema_ref("Object")),
                "Error",
            ),
        );
        paths.insert(format!("/v1/workflows/{name}/run"), json!({"post": op}));
    }
}

fn operation(tag: &str, summary: &str, body: Option<Value>, responses: Value) -> Value {
    let mut op = json!({"tags": [tag], "summary": summary, "responses": responses});
    if let Some(body) = body {
        op["requestBody"] = body;
    }
    op
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9._:-]+$"}})
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// The public models, as the `model` of a request.
fn model_schema(config: &Config) -> Value {
    let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
    json!({"type": "string", "enum": names, "description": "A public model of this gateway."})
}

fn hand_written(config: &Config) -> Map<String, Value> {
    let model = model_schema(config);
    let text_or_parts = json!({"anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "object"}},
        {"type": "null"},
    ]});
    let usage = json!({"type": "object", "properties": {
        "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"},
    }});
    let schemas = json!({
        "ChatMessage": {"type": "object", "required": ["role"], "properties": {
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": text_or_parts,
            "name": {"type": "string"},
            "tool_call_id": {"type": "string"},
            "tool_calls": {"type": "array", "items": {"type": "object"}},
        }},
        "ChatCompletionRequest": {"type": "object", "required": ["model", "messages"], "properties": {
            "model": model,
            "messages": {"type": "array", "minItems": 1, "items": schema_ref("ChatMessage")},
            "stream": {"type": "boolean"},
            "stream_options": {"type": ["object", "null"]},
            "max_tokens": {"type": ["integer", "null"], "minimum": 1},
            "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
            "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
            "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 8},
            "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
            "tools": {"type": "array", "items": {"type": "object"}},
            "tool_choice": {"anyOf": [{"type": "string"}, {"type": "object"}]},
            "response_format": {"type": "object"},
            "user": {"type": "string"},
        }},
        "ChatCompletion": {"type": "object", "required": ["id", "object", "created", "model", "choices"], "properties": {
            "id": {"type": "string"},
            "object": {"const": "chat.completion"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object", "required": ["index", "message"], "properties": {
                "index": {"type": "integer"},
                "message": {"type": "object", "required": ["role"], "properties": {
                    "role": {"const": "assistant"},
                    "content": {"type": ["string", "null"]},
                    "tool_calls": {"type": "array"},
                }},
                "finish_reason": {"type": ["string", "null"]},
            }}},
            "usage": usage,
        }},
        "CompletionRequest": {"type": "object", "required": ["model", "prompt"], "properties": {
            "model": model,
            "prompt": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "max_tokens": {"type": ["integer", "null"], "minimum": 1},
            "stream": {"type": "boolean"},
            "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 8},
            "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        }},
        "Completion": {"type": "object", "required": ["id", "object", "choices"], "properties": {
            "id": {"type": "string"}, "object": {"const": "text_completion"}, "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object", "properties": {"text": {"type": "string"}, "index": {"type": "integer"}}}},
            "usage": usage,
        }},
        "EmbeddingRequest": {"type": "object", "required": ["model", "input"], "properties": {
            "model": model,
            "input": {"anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]},
            "dimensions": {"type": "integer", "minimum": 1},
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        }},
        "EmbeddingList": {"type": "object", "required": ["object", "data"], "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"type": "object", "required": ["embedding", "index"], "properties": {
                "object": {"const": "embedding"},
                "index": {"type": "integer"},
                "embedding": {"anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]},
            }}},
            "model": {"type": "string"},
            "usage": {"type": "object"},
        }},
        "ImageRequest": {"type": "object", "required": ["model", "prompt"], "properties": {
            "model": model,
            "prompt": {"type": "string", "minLength": 1},
            "n": {"type": "integer", "minimum": 1, "maximum": 4},
            "size": {"type": "string", "pattern": "^[0-9]{2,4}x[0-9]{2,4}$"},
            "response_format": {"type": "string", "enum": ["url", "b64_json"]},
        }},
        "ImageList": {"type": "object", "required": ["created", "data"], "properties": {
            "created": {"type": "integer"},
            "data": {"type": "array", "items": {"type": "object"}},
        }},
        "MessagesRequest": {"type": "object", "required": ["model", "max_tokens", "messages"], "properties": {
            "model": model,
            "max_tokens": {"type": "integer", "minimum": 1},
            "messages": {"type": "array", "minItems": 1, "items": schema_ref("AnthropicMessage")},
            "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
            "stream": {"type": "boolean"},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "tools": {"type": "array", "items": {"type": "object"}},
        }},
        "AnthropicMessage": {"type": "object", "required": ["role", "content"], "properties": {
            "role": {"type": "string", "enum": ["user", "assistant"]},
            "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}}]},
        }},
        "CountTokensRequest": {"type": "object", "required": ["model", "messages"], "properties": {
            "model": model,
            "messages": {"type": "array", "items": schema_ref("AnthropicMessage")},
            "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
        }},
        "Message": {"type": "object", "required": ["id", "type", "role", "content"], "properties": {
            "id": {"type": "string"}, "type": {"const": "message"}, "role": {"const": "assistant"},
            "content": {"type": "array", "items": {"type": "object"}},
            "model": {"type": "string"},
            "stop_reason": {"type": ["string", "null"]},
            "usage": {"type": "object"},
        }},
        "AnthropicError": {"type": "object", "required": ["type", "error"], "properties": {
            "type": {"const": "error"},
            "error": {"type": "object", "required": ["type", "message"], "properties": {
                "type": {"type": "string"}, "message": {"type": "string"},
            }},
        }},
        "ResponseRequest": {"type": "object", "required": ["model", "input"], "properties": {
            "model": model,
            "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "required": ["role", "content"], "properties": {
                "type": {"const": "message"},
                "role": {"type": "string", "enum": ["user", "assistant", "system", "developer"]},
                "content": {"type": "string"},
            }}}]},
            "instructions": {"type": ["string", "null"]},
            "previous_response_id": {"type": ["string", "null"]},
            "store": {"type": "boolean"},
            "stream": {"type": "boolean"},
            "max_output_tokens": {"type": ["integer", "null"], "minimum": 1},
            "tools": {"type": "array", "items": {"type": "object", "required": ["type", "name"], "properties": {
                "type": {"const": "function"},
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                "parameters": {"type": "object"},
            }}},
        }},
        "Response": {"type": "object", "required": ["id", "object", "status", "output"], "properties": {
            "id": {"type": "string"}, "object": {"const": "response"},
            "status": {"type": "string"},
            "model": {"type": "string"},
            "output": {"type": "array", "items": {"type": "object"}},
            "usage": {"type": ["object", "null"]},
        }},
        "CompareRequest": {"type": "object", "required": ["models"], "properties": {
            "models": {"type": "array", "minItems": 1, "maxItems": 8, "items": model_schema(config)},
            "messages": {"type": "array", "items": schema_ref("ChatMessage")},
        }},
        "Object": {"type": "object"},
        "NewKey": {"allOf": [schema_ref("KeyFields")], "required": ["name"], "description": "A new key: a name, and whatever else it is to have."},
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn public_paths() -> Value {
    let chat = |summary: &str, request: &str, reply: &str| {
        operation(
            "public",
            summary,
            Some(json_body(schema_ref(request))),
            answers(
                json_or_stream("The reply, or its events.", schema_ref(reply)),
                "Error",
            ),
        )
    };
    json!({
        "/health": {"get": {"tags": ["public"], "summary": "Liveness", "security": [],
            "responses": {"200": json_ok("Up.", json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}))}}},
        "/v1/models": {"get": operation("public", "The public models this key may use", None, answers(json_ok("The models.", schema_ref("ModelList")), "Error"))},
        "/v1/models/{model}": {"get": {"tags": ["public"], "summary": "One public model",
            "parameters": [path_param("model", "A public model's name.")],
            "responses": answers(json_ok("The model.", schema_ref("Model")), "Error")}},
        "/v1/chat/completions": {"post": chat("OpenAI Chat Completions, answered by the model's targets", "ChatCompletionRequest", "ChatCompletion")},
        "/v1/completions": {"post": chat("OpenAI legacy completions", "CompletionRequest", "Completion")},
        "/v1/embeddings": {"post": operation("public", "Embeddings", Some(json_body(schema_ref("EmbeddingRequest"))), answers(json_ok("The vectors.", schema_ref("EmbeddingList")), "Error"))},
        "/v1/images/generations": {"post": operation("public", "Images", Some(json_body(schema_ref("ImageRequest"))), answers(json_ok("The images.", schema_ref("ImageList")), "Error"))},
        "/v1/messages": {"post": operation("public", "Anthropic Messages (Claude Code, the anthropic SDK)", Some(json_body(schema_ref("MessagesRequest"))),
            answers(json_or_stream("The message, or its events.", schema_ref("Message")), "AnthropicError"))},
        "/v1/messages/count_tokens": {"post": operation("public", "Anthropic token counting (estimated)", Some(json_body(schema_ref("CountTokensRequest"))),
            answers(json_ok("The count.", json!({"type": "object", "required": ["input_tokens"], "properties": {"input_tokens": {"type": "integer"}}})), "AnthropicError"))},
        "/v1/responses": {"post": chat("OpenAI Responses API (Codex CLI, the Agents SDK)", "ResponseRequest", "Response")},
        "/v1/responses/{id}": {
            "parameters": [path_param("id", "A stored response's id.")],
            "get": operation("public", "A stored response", None, answers(json_ok("The response.", schema_ref("Response")), "Error")),
            "delete": operation("public", "Delete a stored response", None, answers(json_ok("Deleted.", json!({"type": "object", "required": ["id", "deleted"], "properties": {"id": {"type": "string"}, "deleted": {"const": true}}})), "Error")),
        },
        "/v1/responses/{id}/input_items": {"get": {"tags": ["public"], "summary": "A stored response's input items",
            "parameters": [path_param("id", "A stored response's id.")],
            "responses": answers(json_ok("The items.", json!({"type": "object", "required": ["object", "data"], "properties": {"object": {"const": "list"}, "data": {"type": "array"}}})), "Error")}},
        "/v1/compare": {"post": operation("public", "One prompt to several models side by side", Some(json_body(schema_ref("CompareRequest"))), answers(json_ok("Each model's answer.", schema_ref("Object")), "Error"))},
        "/v1/unified": {"post": operation("public", "A capability (text, images) answered by the provider asked for", Some(json_body(schema_ref("UnifiedRequest"))), answers(json_or_stream("The answer.", schema_ref("Object")), "Error"))},
    })
}

fn admin_paths() -> Value {
    let object = || schema_ref("Object");
    let admin = |summary: &str, ok: Value| {
        json!({"tags": ["admin"], "summary": summary, "security": [{"adminKey": []}],
            "responses": {"200": ok,
                "4XX": {"description": "Refused.", "content": {"application/json": {"schema": schema_ref("Error")}}},
                "5XX": {"description": "A store failed.", "content": {"application/json": {"schema": schema_ref("Error")}}}}})
    };
    let with = |mut op: Value, key: &str, value: Value| {
        op[key] = value;
        op
    };
    let list = || {
        json_ok(
            "A list.",
            json!({"type": "object", "required": ["data"], "properties": {"object": {"const": "list"}, "data": {"type": "array"}}}),
        )
    };
    let csv_or_list = || {
        json!({"description": "A list (JSON), or CSV with format=csv.", "content": {
            "application/json": {"schema": {"type": "object", "required": ["data"], "properties": {"data": {"type": "array"}}}},
            "text/csv": {"schema": {"type": "string"}},
        }})
    };
    let time = json!({"type": "integer", "minimum": 0, "description": "Unix milliseconds."});
    let format = query(
        "format",
        "csv for a CSV file.",
        json!({"type": "string", "enum": ["json", "csv"]}),
    );
    let key_name = path_param("name", "A key's name.");
    let mut make_key = with(
        admin(
            "Make a runtime key: its secret is shown this once",
            json_ok("The key and its secret.", object()),
        ),
        "requestBody",
        json_body(schema_ref("NewKey")),
    );
    // Made: 201, not 200 (Schemathesis's stateful phase found the document saying 200).
    if let Some(responses) = make_key["responses"].as_object_mut() {
        if let Some(made) = responses.remove("200") {
            responses.insert("201".into(), made);
        }
    }
    json!({
        "/openapi.json": {"get": admin("This document", json_ok("OpenAPI 3.1.", object()))},
        "/admin/status": {"get": admin("Providers, targets, breakers, stores", json_ok("Status.", object()))},
        "/admin/config": {"get": admin("The config in force, credentials masked", json_ok("The config.", object()))},
        "/admin/reload": {"post": admin("Reload the config file (refused whole if it has problems)", json_ok("Reloaded.", json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "reloaded"}}})))},
        "/admin/logs": {"get": with(admin("Logged requests, newest first", csv_or_list()), "parameters", json!([
            query("key", "A key's name.", json!({"type": "string"})),
            query("model", "A public model.", json!({"type": "string"})),
            query("provider", "A provider.", json!({"type": "string"})),
            query("status", "A status, or 4xx/5xx/error.", json!({"type": "string"})),
            query("error", "An error kind.", json!({"type": "string"})),
            query("since", "From.", time.clone()),
            query("until", "Until.", time.clone()),
            query("limit", "At most (1-1000).", json!({"type": "integer", "minimum": 1, "maximum": 1000})),
            format.clone(),
        ]))},
        "/admin/logs/{request_id}": {"get": with(admin("One logged request", json_ok("The request.", object())), "parameters", json!([path_param("request_id", "Its x-request-id.")]))},
        "/admin/usage": {"get": with(admin("Usage and spend, grouped", csv_or_list()), "parameters", json!([
            query("group", "day, key, model, provider or team.", json!({"type": "string", "enum": ["day", "key", "model", "provider", "team"]})),
            query("stack", "A second grouping.", json!({"type": "string", "enum": ["day", "key", "model", "provider"]})),
            query("since", "From.", time.clone()),
            query("until", "Until.", time),
            format,
        ]))},
        "/admin/budgets": {"get": admin("Teams' and keys' budgets against their spend", list())},
        "/admin/keys": {
            "get": admin("Client keys, config and runtime (never their secrets)", list()),
            "post": make_key,
        },
        "/admin/keys/{name}": {
            "parameters": [key_name.clone()],
            "get": admin("One key", json_ok("The key.", object())),
            "patch": with(admin("Change a runtime key", json_ok("The key.", object())), "requestBody", json_body(schema_ref("KeyFields"))),
            "delete": admin("Revoke a runtime key", json_ok("Revoked.", object())),
        },
        "/admin/keys/{name}/rotate": {"post": with(admin("A new secret; the old one works for grace_seconds", json_ok("The key and its new secret.", object())), "requestBody", json_body(schema_ref("Rotation"))), "parameters": [key_name]},
        "/admin/audit": {"get": admin("The admin audit trail, newest first", list())},
    })
}

/// The document for the config in force.
pub(super) fn document(config: &Config) -> Value {
    let mut schemas = hand_written(config);
    schemas.extend(generated());
    // What the type cannot say: the names this config maps, and the prompt every type needs.
    if let Some(unified) = schemas.get_mut("UnifiedRequest") {
        let mut providers: Vec<&String> = config.unified.values().flat_map(|m| m.keys()).collect();
        providers.sort();
        providers.dedup();
        let p = &mut unified["properties"];
        p["model_type"]["enum"] = json!(crate::flows::MODEL_TYPES);
        p["provider"] = json!({"type": "string", "enum": providers});
        p["model"] = model_schema(config);
        p["params"] = json!({"type": "object", "required": ["prompt"], "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 4000},
        }});
        unified["required"] = json!(["model_type", "params"]);
    }
    let mut paths = match public_paths() {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    app_paths(config, &mut paths);
    workflow_paths(config, &mut paths);
    if let Value::Object(admin) = admin_paths() {
        paths.extend(admin);
    }
    let public = config
        .server
        .listen
        .first()
        .map_or("127.0.0.1:8080", String::as_str);
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let admin_url = config
        .admin
        .as_ref()
        .map(|a| format!("http://{}", a.listen));
    // Admin operations are on the admin listener.
    for (path, item) in paths.iter_mut() {
        if path.starts_with("/admin/") || path == "/openapi.json" {
            if let Some(url) = &admin_url {
                item["servers"] = json!([{"url": url, "description": "The admin listener."}]);
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "modelmux",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "One OpenAI-compatible API (and Anthropic's Messages, and OpenAI's Responses) in front of many model vendors. Public operations take a client key (Authorization: Bearer, or x-api-key); admin operations, on the admin listener, the admin key.",
        },
        "servers": [{"url": format!("{scheme}://{public}"), "description": "The public listener."}],
        "security": [{"clientKey": []}, {"apiKey": []}],
        "tags": [
            {"name": "public", "description": "What clients and SDKs call."},
            {"name": "apps", "description": "This gateway's prompt apps."},
            {"name": "workflows", "description": "This gateway's workflows."},
            {"name": "admin", "description": "Operating the gateway (admin listener)."},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "clientKey": {"type": "http", "scheme": "bearer", "description": "A client key."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "A client key, as Anthropic's SDK sends it."},
                "adminKey": {"type": "http", "scheme": "bearer", "description": "The admin key."},
            },
        },
    })
}
