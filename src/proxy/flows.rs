//! What users build on the gateway, served: prompt apps (`/v1/apps/{name}/completions`, and
//! `model: "app/<name>"`), the unified request (`/v1/unified`), and workflows
//! (`/v1/workflows/{name}/run`, one node alone, and `model: "workflow/<name>"`). An app call
//! becomes one ordinary chat request; unified requests and workflow llm nodes go back into the
//! gateway over its own socket as the caller, so every policy applies to each.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::compare::sse;
use super::respond::{write_json, write_stream_header, write_value};
use super::{Gateway, Handled, RequestCtx, Session, Stop};
use crate::api::ClientApi;
use crate::config::Config;
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::flows::template::{self, Unfilled};
use crate::flows::workflow::{condition_holds, NodeKind, Workflow};
use crate::providers::model::{Choice, Completion, FinishReason};
use crate::providers::Usage;

/// A workflow run ends after this long, whatever its nodes are doing.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// The most an http node reads of a response.
const MAX_HTTP_BODY: usize = 1024 * 1024;

fn not_found(what: &str, name: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::NotFound,
        format!("There is no {what} named `{name}`."),
    )
}

/// The chat body for a prompt app's version: its messages filled from `variables`, its
/// parameters, then the caller's overrides. A template with one variable takes `user_input`
/// for it.
pub(super) fn app_body(
    config: &Config,
    name: &str,
    call: &Map<String, Value>,
    variables: &Map<String, Value>,
) -> GwResult<Value> {
    let mut variables = variables.clone();
    let app = config
        .apps
        .by_name
        .get(name)
        .ok_or_else(|| not_found("app", name))?;
    let version = call
        .get("version")
        .map(|v| {
            v.as_u64()
                .map(|n| n as u32)
                .ok_or_else(|| GatewayError::bad_param("version", "'version' must be an integer."))
        })
        .transpose()?;
    let label = call.get("label").and_then(Value::as_str);
    let chosen = app.pick(version, label).map_err(|m| {
        GatewayError::bad_param(if label.is_some() { "label" } else { "version" }, m)
    })?;
    if let ([only], Some(input)) = (
        chosen.variables().as_slice(),
        variables.get("user_input").cloned(),
    ) {
        variables.entry(only.clone()).or_insert(input);
    }
    let messages = chosen.messages(&variables).map_err(|e| match e {
        Unfilled::Missing(missing) => GatewayError::bad_param(
            &format!("variables.{missing}"),
            format!("Missing variable `{missing}` for app `{name}`."),
        ),
        too_long => GatewayError::bad_param("variables", format!("App `{name}`: {too_long}.")),
    })?;
    let mut body = chosen.params.clone();
    for (k, v) in call {
        if !matches!(
            k.as_str(),
            "variables" | "version" | "label" | "model" | "messages"
        ) {
            body.insert(k.clone(), v.clone());
        }
    }
    body.insert("model".into(), json!(chosen.model));
    body.insert("messages".into(), Value::Array(messages));
    Ok(Value::Object(body))
}

/// The text of the last user message of a chat body (for `app/` and `workflow/` models).
pub(super) fn last_user_text(body: &Map<String, Value>) -> String {
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"));
    match last.map(|m| &m["content"]) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn object(body: &[u8]) -> GwResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(GatewayError::invalid(
            "The request body must be a JSON object.",
            None,
        )),
        Err(e) => Err(crate::providers::openai::wire::invalid_json(e)),
    }
}

impl Gateway {
    /// `POST /v1/apps/{name}/completions`: `{"variables", "version"?, "label"?, "stream"?, ...}`.
    pub(super) async fn app(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        name: &str,
    ) -> Handled {
        let (config, key, body) = self.accept(session, ctx, ClientApi::OpenAi).await?;
        let call = object(&body)?;
        let variables = match call.get("variables") {
            None => Map::new(),
            Some(Value::Object(v)) => v.clone(),
            Some(_) => {
                return Err(
                    GatewayError::bad_param("variables", "'variables' must be an object.").into(),
                )
            }
        };
        let chat = app_body(&config, name, &call, &variables)?;
        self.chat_with(session, ctx, (&config, key), chat).await
    }

    /// `POST /v1/unified`: seed 000's one request for every type, routed by the capability map.
    pub(super) async fn unified(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        let (config, _, body) = self.accept(session, ctx, ClientApi::OpenAi).await?;
        let call: UnifiedCall = serde_json::from_slice(&body)
            .map_err(|e| GatewayError::invalid(format!("Invalid unified request: {e}"), None))?;
        let (provider, model) = call.route(&config)?;
        let (path, inner) = call.inner_request(&model)?;
        let headers = self.inner_headers(session, ctx);
        let answer = self.call_local(path, headers, &inner).await?;
        let output = match call.model_type.as_str() {
            "text_generation" => answer
                .pointer("/choices/0/message/content")
                .cloned()
                .unwrap_or(Value::Null),
            "image_generation" => answer.get("data").cloned().unwrap_or(Value::Null),
            _ => Value::Array(
                answer
                    .get("data")
                    .and_then(Value::as_array)
                    .map(|d| d.iter().map(|e| e["embedding"].clone()).collect())
                    .unwrap_or_default(),
            ),
        };
        let reply = json!({"output": output, "model": model, "provider": provider,
                           "usage": answer.get("usage").cloned().unwrap_or(Value::Null)});
        ctx.first_byte = Some(Instant::now());
        write_value(session, 200, &reply, &ctx.success_headers()).await?;
        Ok(())
    }

    /// `POST /v1/workflows/{name}/run`: `{"inputs", "stream"?}`; the outputs as JSON, or an SSE
    /// stream of per-node events ending with the outputs.
    pub(super) async fn run_workflow(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        name: &str,
    ) -> Handled {
        let (config, _, body) = self.accept(session, ctx, ClientApi::OpenAi).await?;
        let wf = workflow(&config, ctx.key, name)?;
        let call = object(&body)?;
        let inputs = match call.get("inputs") {
            None => Map::new(),
            Some(Value::Object(i)) => i.clone(),
            Some(_) => {
                return Err(GatewayError::bad_param("inputs", "'inputs' must be an object.").into())
            }
        };
        let values = wf
            .typed_inputs(&inputs)
            .map_err(|m| GatewayError::bad_param("inputs", m))?;
        let headers = self.inner_headers(session, ctx);
        let stream = call.get("stream").and_then(Value::as_bool).unwrap_or(false);
        if !stream {
            let mut events = Vec::new();
            let run = self
                .execute(&wf, &inputs, values, &headers, &mut |e| events.push(e))
                .await;
            let (status, reply) = match run {
                Ok(outputs) => (200, json!({"outputs": outputs, "events": events})),
                Err(e) => (
                    e.status(),
                    json!({"error": {"message": e.message, "type": e.kind.as_str()}, "events": events}),
                ),
            };
            write_value(session, status, &reply, &ctx.success_headers()).await?;
            return Ok(());
        }
        write_stream_header(session, &ctx.success_headers()).await?;
        ctx.first_byte = Some(Instant::now());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let run = async {
            let result = self
                .execute(&wf, &inputs, values, &headers, &mut |e| {
                    let _ = tx.send(e);
                })
                .await;
            let last = match result {
                Ok(outputs) => json!({"event": "outputs", "outputs": outputs}),
                Err(e) => {
                    json!({"event": "failed", "error": {"message": e.message, "status": e.status()}})
                }
            };
            let _ = tx.send(last);
            drop(tx);
        };
        let writer = async {
            while let Some(event) = rx.recv().await {
                session.write_response_body(sse(&event), false).await?;
            }
            session
                .write_response_body(Bytes::from_static(b"data: [DONE]\n\n"), false)
                .await?;
            session.finish_body().await
        };
        let ((), written) = tokio::join!(run, writer);
        written.map_err(Stop::Downstream)
    }

    /// `POST /v1/workflows/{name}/nodes/{id}/run`: one node alone, for debugging, with the
    /// values its templates refer to given as `{"values": {"inputs.text": "...", "ask.output": "..."}}`.
    pub(super) async fn run_node(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        name: &str,
        id: &str,
    ) -> Handled {
        let (config, _, body) = self.accept(session, ctx, ClientApi::OpenAi).await?;
        let wf = workflow(&config, ctx.key, name)?;
        let index = wf
            .nodes
            .iter()
            .position(|n| n.id == id)
            .ok_or_else(|| not_found("node", id))?;
        let call = object(&body)?;
        let values: HashMap<String, String> = call
            .get("values")
            .and_then(Value::as_object)
            .map(|v| {
                v.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_string),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let headers = self.inner_headers(session, ctx);
        let began = Instant::now();
        let ran = self
            .run_one(&wf, index, &values, &Map::new(), &headers)
            .await;
        let (status, reply) = match ran {
            Ok((output, tokens)) => (
                200,
                json!({"node": id, "output": output, "tokens": tokens,
                "latency_ms": began.elapsed().as_millis() as u64}),
            ),
            Err(e) => (
                e.status(),
                json!({"node": id, "error": {"message": e.message}}),
            ),
        };
        write_value(session, status, &reply, &ctx.success_headers()).await?;
        Ok(())
    }

    /// `model: "workflow/<name>"` on chat: the last user message is the workflow's first
    /// input; the result comes back as a chat completion (streamed when asked).
    pub(super) async fn workflow_as_model(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        config: &Config,
        name: &str,
        chat: &Map<String, Value>,
    ) -> Handled {
        let wf = workflow(config, ctx.key, name)?;
        let mut inputs = Map::new();
        if let Some((input, _)) = wf.inputs.iter().next() {
            inputs.insert(input.clone(), json!(last_user_text(chat)));
        }
        let values = wf
            .typed_inputs(&inputs)
            .map_err(|m| GatewayError::bad_param("messages", m))?;
        let headers = self.inner_headers(session, ctx);
        let public = format!("workflow/{name}");
        let stream = chat.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage = chat
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // Streamed, the run stops before its last llm node, which then streams to the client
        // as it answers; if that node is not to run, the run has gone to its end.
        let until = stream
            .then(|| {
                wf.order().and_then(|order| {
                    order
                        .into_iter()
                        .rev()
                        .map(|i| &wf.nodes[i])
                        .find(|n| matches!(n.kind, NodeKind::Llm { .. }))
                })
            })
            .flatten();
        let mut tokens = Usage::default();
        let mut count = |e: Value| {
            if let Some(t) = e
                .get("usage")
                .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
            {
                tokens = Usage::new(
                    tokens.prompt_tokens + t.prompt_tokens,
                    tokens.completion_tokens + t.completion_tokens,
                );
            }
        };
        let progress = self
            .execute_until(
                &wf,
                &inputs,
                values,
                &headers,
                &mut count,
                until.map(|n| n.id.as_str()),
            )
            .await?;
        if let (true, Some(node)) = (progress.reached, until) {
            let mut body = llm_body(node, &progress.values)?;
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": include_usage});
            return self
                .stream_node_as(session, ctx, &public, headers, &body)
                .await;
        }
        let outputs = outputs(&wf, &progress.ran);
        let text = outputs
            .values()
            .next()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default();
        let completion = Completion {
            choices: vec![Choice {
                content: Some(text),
                reasoning: None,
                tool_calls: Vec::new(),
                finish: FinishReason::Stop,
            }],
            usage: Some(tokens),
        };
        ctx.first_byte = Some(Instant::now());
        if stream {
            let mut out = Vec::new();
            crate::api::replay_as_stream(
                ClientApi::OpenAi,
                &public,
                include_usage,
                None,
                &completion,
                &mut out,
            );
            write_stream_header(session, &ctx.success_headers()).await?;
            session.write_response_body(Bytes::from(out), true).await?;
            return Ok(());
        }
        let (body, _) = ClientApi::OpenAi.render_completion(&public, None, &completion);
        write_json(session, 200, body, &ctx.success_headers()).await?;
        Ok(())
    }

    /// An llm node's chat request streamed to the client as it comes, each chunk naming
    /// `public` as its model.
    async fn stream_node_as(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        public: &str,
        headers: Vec<(&'static str, String)>,
        body: &Value,
    ) -> Handled {
        let request = crate::providers::UpstreamRequest {
            path_and_query: "/v1/chat/completions".into(),
            headers,
            body: Bytes::from(serde_json::to_vec(body).expect("json serializes")),
        };
        let mut exchange = self.send_self(&request).await?;
        if !(200..300).contains(&exchange.status()) {
            let status = exchange.status();
            let reply = exchange.read_all(1024 * 1024).await.unwrap_or_default();
            let v: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
            let message = v
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("the request failed");
            return Err(GatewayError::new(ErrorKind::UpstreamError, message)
                .with_status(status)
                .into());
        }
        write_stream_header(session, &ctx.success_headers()).await?;
        ctx.first_byte = Some(Instant::now());
        let mut splitter = crate::providers::sse::SseSplitter::new();
        while let Ok(Some(chunk)) = exchange.next_chunk().await {
            let mut events = Vec::new();
            if splitter
                .push(&chunk, |e| events.push(e.data.into_owned()))
                .is_err()
            {
                break;
            }
            for data in events {
                let out = match serde_json::from_str::<Value>(&data) {
                    Ok(mut v) if v.get("model").is_some() => {
                        v["model"] = json!(public);
                        sse(&v)
                    }
                    _ => Bytes::from(format!("data: {data}\n\n")),
                };
                ctx.first_token.get_or_insert_with(Instant::now);
                session.write_response_body(out, false).await?;
            }
        }
        session.finish_body().await?;
        Ok(())
    }

    /// Runs every node that its edges activate, in order, within the run's deadline; `emit`
    /// gets each node's events. The outputs of the run's result nodes, or the first failure.
    async fn execute(
        &self,
        wf: &Workflow,
        inputs: &Map<String, Value>,
        values: HashMap<String, String>,
        headers: &[(&'static str, String)],
        emit: &mut (dyn FnMut(Value) + Send),
    ) -> GwResult<Map<String, Value>> {
        let progress = self
            .execute_until(wf, inputs, values, headers, emit, None)
            .await?;
        Ok(outputs(wf, &progress.ran))
    }

    /// As [`Self::execute`], stopping before the node `until` when it is to run.
    async fn execute_until(
        &self,
        wf: &Workflow,
        inputs: &Map<String, Value>,
        mut values: HashMap<String, String>,
        headers: &[(&'static str, String)],
        emit: &mut (dyn FnMut(Value) + Send),
        until: Option<&str>,
    ) -> GwResult<Progress> {
        let order = wf
            .order()
            .ok_or_else(|| GatewayError::new(ErrorKind::Internal, "the workflow has a cycle"))?;
        let deadline = Instant::now() + RUN_DEADLINE;
        let mut ran: HashMap<String, String> = HashMap::new();
        let mut made = 0usize;
        for i in order {
            let node = &wf.nodes[i];
            let incoming: Vec<_> = wf.edges.iter().filter(|e| e.to == node.id).collect();
            let active = incoming.is_empty()
                || incoming.iter().any(|e| match ran.get(e.from.as_str()) {
                    Some(out) => e
                        .when
                        .is_none_or(|w| out == if w { "true" } else { "false" }),
                    None => false,
                });
            if !active {
                emit(json!({"event": "node_skipped", "node": node.id}));
                continue;
            }
            if until == Some(node.id.as_str()) {
                return Ok(Progress {
                    values,
                    ran,
                    reached: true,
                });
            }
            emit(json!({"event": "node_started", "node": node.id, "type": node.kind.type_name()}));
            let began = Instant::now();
            let left = deadline.saturating_duration_since(began);
            let result =
                match tokio::time::timeout(left, self.run_one(wf, i, &values, inputs, headers))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(GatewayError::new(
                        ErrorKind::UpstreamTimeout,
                        format!(
                            "The workflow ran past its {} s deadline.",
                            RUN_DEADLINE.as_secs()
                        ),
                    )),
                };
            let latency_ms = began.elapsed().as_millis() as u64;
            // The run's values together are bounded too: each node's events carry its output.
            let result = result.and_then(|(output, usage)| {
                made += output.len();
                if made > MAX_RUN_VALUES {
                    return Err(GatewayError::invalid(
                        format!("The run's node values grew past {MAX_RUN_VALUES} bytes."),
                        None,
                    ));
                }
                Ok((output, usage))
            });
            match result {
                Ok((output, usage)) => {
                    emit(
                        json!({"event": "node_finished", "node": node.id, "output": output,
                                "usage": usage, "latency_ms": latency_ms}),
                    );
                    values.insert(format!("{}.output", node.id), output.clone());
                    ran.insert(node.id.clone(), output);
                }
                Err(e) => {
                    emit(
                        json!({"event": "node_failed", "node": node.id, "latency_ms": latency_ms,
                                "error": {"message": e.message, "status": e.status()}}),
                    );
                    let message = format!("Node `{}` failed: {}", node.id, e.message);
                    return Err(GatewayError::new(e.kind, message).with_status(e.status()));
                }
            }
        }
        Ok(Progress {
            values,
            ran,
            reached: false,
        })
    }

    /// One node: its output and, for llm nodes, the tokens it used.
    async fn run_one(
        &self,
        wf: &Workflow,
        index: usize,
        values: &HashMap<String, String>,
        inputs: &Map<String, Value>,
        headers: &[(&'static str, String)],
    ) -> GwResult<(String, Option<Value>)> {
        let node = &wf.nodes[index];
        let fill = |t: &str| fill(t, values);
        Ok(match &node.kind {
            NodeKind::Input => (Value::Object(inputs.clone()).to_string(), None),
            NodeKind::Template { template } => (fill(template)?, None),
            NodeKind::Output { value } => (fill(value)?, None),
            NodeKind::Condition { value, op, text } => {
                (condition_holds(*op, &fill(value)?, text).to_string(), None)
            }
            NodeKind::Merge => {
                let parts: Vec<String> = wf
                    .edges
                    .iter()
                    .filter(|e| e.to == node.id)
                    .filter_map(|e| values.get(&format!("{}.output", e.from)).cloned())
                    .collect();
                let merged = parts.join("\n");
                if merged.len() > MAX_NODE_VALUE {
                    return Err(GatewayError::invalid(
                        format!(
                            "Node `{}`: the merged text is over {MAX_NODE_VALUE} bytes.",
                            node.id
                        ),
                        None,
                    ));
                }
                (merged, None)
            }
            NodeKind::Llm { .. } => {
                let body = llm_body(node, values)?;
                let answer = self
                    .call_local("/v1/chat/completions", headers.to_vec(), &body)
                    .await?;
                let text = answer
                    .pointer("/choices/0/message/content")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                (text, answer.get("usage").cloned())
            }
            NodeKind::Http { url, method, body } => {
                let url = fill(url)?;
                let body = body.as_deref().map(fill).transpose()?;
                (self.http_node(&url, method, body).await?, None)
            }
        })
    }

    /// An http node's call (its host was checked against `workflows.http_allow` on load).
    async fn http_node(&self, url: &str, method: &str, body: Option<String>) -> GwResult<String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| GatewayError::invalid(format!("`{url}` is not a URL."), None))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(GatewayError::invalid(
                format!("`{url}` is not an absolute URL."),
                None,
            ));
        };
        let allowed = self
            .config()
            .workflows
            .http_allow
            .iter()
            .any(|h| h == authority.as_str());
        if !allowed {
            return Err(GatewayError::invalid(
                format!("`{authority}` is not in workflows.http_allow."),
                None,
            ));
        }
        let endpoint = crate::config::Endpoint::parse(&format!("{scheme}://{authority}"))
            .map_err(|e| GatewayError::invalid(e, None))?;
        let request = crate::providers::UpstreamRequest {
            path_and_query: uri.path_and_query().map_or("/".into(), |p| p.to_string()),
            headers: vec![("content-type", "application/json".into())],
            body: Bytes::from(body.unwrap_or_default()),
        };
        let timeouts = crate::config::Timeouts::default();
        let mut exchange = self
            .upstreams
            .send(&endpoint, &timeouts, None, method, &request)
            .await?;
        let status = exchange.status();
        let reply = exchange.read_all(MAX_HTTP_BODY).await?;
        self.upstreams.release(exchange);
        if !(200..300).contains(&status) {
            return Err(GatewayError::new(
                ErrorKind::UpstreamError,
                format!("`{url}` answered HTTP {status}."),
            ));
        }
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }
}

/// How far a run got: the values its templates can use, each node that ran with its output,
/// and whether it stopped before the node it was to stop at.
struct Progress {
    values: HashMap<String, String>,
    ran: HashMap<String, String>,
    reached: bool,
}

/// The run's outputs: those of its result nodes that ran.
fn outputs(wf: &Workflow, ran: &HashMap<String, String>) -> Map<String, Value> {
    wf.result_nodes()
        .into_iter()
        .filter_map(|id| ran.get(id).map(|o| (id.to_string(), json!(o))))
        .collect()
}

/// The most a workflow node's value may hold: a chain of nodes that each repeat the last
/// must not grow a run without bound.
const MAX_NODE_VALUE: usize = 1024 * 1024;

/// The most all of a run's node values may hold together.
const MAX_RUN_VALUES: usize = 4 * 1024 * 1024;

/// A node's template filled from the run's values.
fn fill(template: &str, values: &HashMap<String, String>) -> GwResult<String> {
    template::render(template, |name| values.get(name).cloned(), MAX_NODE_VALUE)
        .map_err(|e| GatewayError::invalid(format!("A node's template: {e} in this run."), None))
}

/// An llm node's chat body, its templates filled.
fn llm_body(
    node: &crate::flows::workflow::Node,
    values: &HashMap<String, String>,
) -> GwResult<Value> {
    let NodeKind::Llm {
        model,
        system,
        prompt,
        params,
    } = &node.kind
    else {
        return Err(GatewayError::new(ErrorKind::Internal, "not an llm node"));
    };
    let fill = |t: &str| fill(t, values);
    let mut body = params.clone();
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(json!({"role": "system", "content": fill(s)?}));
    }
    messages.push(json!({"role": "user", "content": fill(prompt)?}));
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages));
    Ok(Value::Object(body))
}

/// The workflow the caller's key (`key`, its index) may run: its `models` govern workflows as
/// `workflow/<name>` (or `workflow/*`), like models.
fn workflow(config: &Config, key: Option<usize>, name: &str) -> GwResult<Arc<Workflow>> {
    let wf = config
        .workflows
        .by_name
        .get(name)
        .cloned()
        .ok_or_else(|| not_found("workflow", name))?;
    let allowed = key
        .and_then(|k| config.keys.get(k))
        .is_some_and(|k| k.may_use(&format!("workflow/{name}")));
    if !allowed {
        return Err(super::handlers::not_allowed(format!(
            "This API key is not allowed to run the workflow `{name}`."
        )));
    }
    Ok(wf)
}

/// Seed 000's unified request.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "UnifiedRequest")]
pub(crate) struct UnifiedCall {
    /// text_generation, image_generation or embedding.
    model_type: String,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    params: Map<String, Value>,
}

impl UnifiedCall {
    /// The provider name and public model: the one named, or the capability map's.
    fn route(&self, config: &Config) -> GwResult<(String, String)> {
        if !crate::flows::MODEL_TYPES.contains(&self.model_type.as_str()) {
            return Err(GatewayError::bad_param(
                "model_type",
                format!(
                    "'model_type' must be one of {}.",
                    crate::flows::MODEL_TYPES.join(", ")
                ),
            ));
        }
        let by_provider = config.unified.get(&self.model_type);
        if let Some(model) = &self.model {
            let provider = self.provider.clone().or_else(|| {
                by_provider
                    .and_then(|m| m.iter().find(|(_, v)| *v == model).map(|(k, _)| k.clone()))
            });
            let provider = provider.or_else(|| {
                config
                    .model(model)
                    .and_then(|m| m.targets.first())
                    .map(|t| t.provider.vendor.kind().to_string())
            });
            return Ok((provider.unwrap_or_default(), model.clone()));
        }
        let provider = self.provider.as_deref().unwrap_or("default");
        let model = by_provider.and_then(|m| m.get(provider)).ok_or_else(|| {
            let known: Vec<&String> = by_provider.map(|m| m.keys().collect()).unwrap_or_default();
            GatewayError::bad_param(
                "provider",
                format!(
                    "No {} model for provider `{provider}`; the gateway maps: {}.",
                    self.model_type,
                    known
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        Ok((provider.to_string(), model.clone()))
    }

    /// The OpenAI request it becomes: its path and body.
    fn inner_request(&self, model: &str) -> GwResult<(&'static str, Value)> {
        let mut p = self.params.clone();
        let variables = match p.remove("variables") {
            Some(Value::Object(v)) => v,
            None => Map::new(),
            Some(_) => {
                return Err(GatewayError::bad_param(
                    "params.variables",
                    "'variables' must be an object.",
                ))
            }
        };
        let prompt = match p.remove("prompt") {
            Some(Value::String(t)) => Some(
                template::render(
                    &t,
                    |name| {
                        variables
                            .get(name)
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    },
                    template::MAX_FILLED,
                )
                .map_err(|e| match e {
                    Unfilled::Missing(missing) => GatewayError::bad_param(
                        &format!("params.variables.{missing}"),
                        format!("Missing variable `{missing}`."),
                    ),
                    too_long => GatewayError::bad_param("params.prompt", format!("{too_long}.")),
                })?,
            ),
            Some(_) => {
                return Err(GatewayError::bad_param(
                    "params.prompt",
                    "'prompt' must be a string.",
                ))
            }
            None => None,
        };
        p.insert("model".into(), json!(model));
        let need_prompt = || GatewayError::bad_param("params.prompt", "Missing 'params.prompt'.");
        Ok(match self.model_type.as_str() {
            "text_generation" => {
                let mut messages = Vec::new();
                if let Some(system) = p.remove("system") {
                    messages.push(json!({"role": "system", "content": system}));
                }
                messages.push(json!({"role": "user", "content": prompt.ok_or_else(need_prompt)?}));
                p.insert("messages".into(), Value::Array(messages));
                p.remove("stream");
                ("/v1/chat/completions", Value::Object(p))
            }
            "image_generation" => {
                p.insert("prompt".into(), json!(prompt.ok_or_else(need_prompt)?));
                ("/v1/images/generations", Value::Object(p))
            }
            _ => {
                if !p.contains_key("input") {
                    p.insert("input".into(), json!(prompt.ok_or_else(need_prompt)?));
                }
                ("/v1/embeddings", Value::Object(p))
            }
        })
    }
}
