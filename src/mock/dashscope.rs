//! Mock of Alibaba DashScope: the native text-generation API with its `id:/event:/:HTTP_STATUS`
//! SSE framing, and the OpenAI-compatible mode under `/compatible-mode/v1`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::conversation::{
    split_directive, Conversation, Fault, Finish, LastTurn, Reply, TaskFate,
};
use super::{keys, media, now_secs, openai, ChatCall, Dialect, MockRequest, Outcome, Routed};

pub(crate) const GENERATION_PATH: &str = "/api/v1/services/aigc/text-generation/generation";
/// Vision models (qwen-vl) answer here, with content as a list of `{"text"}`/`{"image"}` items.
pub(crate) const MULTIMODAL_PATH: &str = "/api/v1/services/aigc/multimodal-generation/generation";

pub(crate) const EMBEDDINGS_PATH: &str =
    "/api/v1/services/embeddings/text-embedding/text-embedding";
pub(crate) const IMAGE_SYNTHESIS_PATH: &str = "/api/v1/services/aigc/text2image/image-synthesis";
const TASKS_PREFIX: &str = "/api/v1/tasks/";
const RESULTS_PREFIX: &str = "/results/";

pub(crate) fn route(req: &MockRequest, tasks: &Tasks) -> Routed {
    let authorized = req.bearer() == Some(keys::DASHSCOPE);
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", p) if p.starts_with(RESULTS_PREFIX) => {
            return Routed::Done(Outcome::Raw {
                status: 200,
                content_type: "image/png",
                body: media::png(),
            })
        }
        // Compatible mode answers a bad key in OpenAI's shape, below.
        (_, p) if !authorized && !p.starts_with("/compatible-mode/") => {
            return Routed::Done(error(401, "Invalid API-key provided.", None))
        }
        _ => {}
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", EMBEDDINGS_PATH) => embeddings(req),
        ("POST", IMAGE_SYNTHESIS_PATH) => submit_image_task(req, tasks),
        ("GET", p) if p.starts_with(TASKS_PREFIX) => {
            Routed::Done(tasks.poll(&p[TASKS_PREFIX.len()..], req))
        }
        ("POST", p) if p.starts_with(TASKS_PREFIX) && p.ends_with("/cancel") => {
            let id = &p[TASKS_PREFIX.len()..p.len() - "/cancel".len()];
            Routed::Done(tasks.cancel(id))
        }
        ("POST", "/compatible-mode/v1/chat/completions") => openai::chat(req, keys::DASHSCOPE),
        ("POST", GENERATION_PATH | MULTIMODAL_PATH) => match parse(req) {
            Ok(conversation) => Routed::Chat(ChatCall {
                dialect: Dialect::DashScope,
                conversation,
            }),
            Err(message) => Routed::Done(error(400, &message, None)),
        },
        _ => Routed::Done(error(
            404,
            &format!("Not found: {} {}", req.method, req.path),
            None,
        )),
    }
}

/// DashScope content: a string, or a list of `{"text"}` / `{"image"}` items (VL models), or
/// OpenAI-style parts.
fn content_text(content: &Value, images: &mut usize) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| {
                if i.get("image").is_some() || i.get("image_url").is_some() {
                    *images += 1;
                }
                i.get("text").and_then(Value::as_str).map(String::from)
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn parse(req: &MockRequest) -> Result<Conversation, String> {
    let body = req
        .json()
        .map_err(|e| format!("Request body is not valid JSON: {e}"))?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or("Model not specified.")?;
    let messages = body
        .pointer("/input/messages")
        .and_then(Value::as_array)
        .ok_or("Input messages must be provided under `input.messages`.")?;
    let params = body.get("parameters").cloned().unwrap_or(json!({}));
    let mut conv = Conversation::new(model);
    for m in messages {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or("Role must be provided.")?;
        let text = content_text(m.get("content").unwrap_or(&Value::Null), &mut conv.images);
        conv.last = match role {
            "user" => LastTurn::User(text.clone()),
            "tool" => LastTurn::ToolResult(text.clone()),
            "system" | "assistant" => LastTurn::Other,
            other => {
                return Err(format!(
                    "Role must be in [user, assistant, system, tool], got {other}"
                ))
            }
        };
        if !text.is_empty() {
            conv.texts.push(text);
        }
    }
    conv.tools = openai::tools(params.get("tools"))?;
    conv.tool_choice = openai::tool_choice(params.get("tool_choice"));
    let wants_json = params
        .pointer("/response_format/type")
        .and_then(Value::as_str)
        == Some("json_object");
    if wants_json && !conv.texts.iter().any(|t| t.to_lowercase().contains("json")) {
        return Err("'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.".into());
    }
    conv.max_tokens = params.get("max_tokens").and_then(Value::as_u64);
    conv.stream = req.header("x-dashscope-sse") == Some("enable");
    conv.include_usage = true;
    if let Some(on) = params.get("enable_thinking").and_then(Value::as_bool) {
        let budget = params.get("thinking_budget").and_then(Value::as_u64);
        conv.thinking = Some(match budget {
            Some(b) => format!("enable_thinking={on} thinking_budget={b}"),
            None => format!("enable_thinking={on}"),
        });
        conv.thinks = on;
    }
    conv.options = params;
    Ok(conv)
}

fn finish_str(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
    }
}

/// DashScope's usage; `reasoning` of the output tokens were thinking (reported when any).
fn usage(input: u64, output: u64, reasoning: u64) -> Value {
    let mut u =
        json!({"input_tokens": input, "output_tokens": output, "total_tokens": input + output});
    if reasoning > 0 {
        u["output_tokens_details"] = json!({"reasoning_tokens": reasoning});
    }
    u
}

/// Whether the request asked for `result_format: message` (the gateway always should).
fn message_format(req_params: &Value) -> bool {
    req_params.get("result_format").and_then(Value::as_str) == Some("message")
}

/// The reply in the requested result format and, for streams, output mode.
pub(crate) fn respond(conv: &Conversation, reply: &Reply, id: u64) -> Outcome {
    let params = &conv.options;
    let request_id = format!("mock-{id:08}");
    let tool_calls = |args: &str, first: bool| {
        let call = reply
            .tool_call
            .as_ref()
            .expect("only called for tool replies");
        if first {
            json!([{"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": args}}])
        } else {
            json!([{"index": 0, "function": {"arguments": args}}])
        }
    };
    let as_message = message_format(params) || reply.tool_call.is_some();
    if !conv.stream {
        let output = if as_message {
            let mut message = json!({"role": "assistant", "content": reply.text()});
            if let Some(r) = &reply.reasoning {
                message["reasoning_content"] = json!(r);
            }
            if let Some(call) = &reply.tool_call {
                message["content"] = json!("");
                message["tool_calls"] = tool_calls(&call.arguments, true);
            }
            json!({"choices": [{"finish_reason": finish_str(reply.finish), "message": message}]})
        } else {
            json!({"text": reply.text(), "finish_reason": finish_str(reply.finish)})
        };
        return Outcome::json(
            200,
            json!({"output": output, "usage": usage(reply.prompt_tokens, reply.completion_tokens, reply.reasoning_tokens()), "request_id": request_id}),
        );
    }
    let incremental = params
        .get("incremental_output")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // The last event carries the whole count, thinking included.
    let reasoning_so_far = |output: u64| {
        if output == reply.completion_tokens {
            reply.reasoning_tokens()
        } else {
            0
        }
    };
    let mut events = Vec::new();
    let mut so_far = String::new();
    let mut push = |n: usize, message: Value, finish: &str, output_tokens: u64| {
        let data = json!({"output": {"choices": [{"message": message, "finish_reason": finish}]},
            "usage": usage(reply.prompt_tokens, output_tokens, reasoning_so_far(output_tokens)), "request_id": request_id});
        events.push(format!(
            "id:{}\nevent:result\n:HTTP_STATUS/200\ndata:{data}\n\n",
            n + 1
        ));
    };
    if reply.tool_call.is_some() {
        let pieces = reply.argument_pieces();
        for (i, piece) in pieces.iter().enumerate() {
            so_far.push_str(piece);
            let args = if incremental {
                piece.as_str()
            } else {
                so_far.as_str()
            };
            push(
                i,
                json!({"role": "assistant", "content": "", "tool_calls": tool_calls(args, i == 0 || !incremental)}),
                "null",
                i as u64 + 1,
            );
        }
        push(
            pieces.len(),
            json!({"role": "assistant", "content": ""}),
            "tool_calls",
            reply.completion_tokens,
        );
    } else {
        if let Some(r) = &reply.reasoning {
            let thought = json!({"role": "assistant", "content": "", "reasoning_content": r});
            push(0, thought, "null", 1);
        }
        let pieces = reply.pieces();
        for (i, piece) in pieces.iter().enumerate() {
            so_far.push_str(piece);
            let content = if incremental {
                piece.as_str()
            } else {
                so_far.as_str()
            };
            push(
                i,
                json!({"role": "assistant", "content": content}),
                "null",
                i as u64 + 1,
            );
        }
        let last_content = if incremental { "" } else { so_far.as_str() };
        push(
            pieces.len(),
            json!({"role": "assistant", "content": last_content}),
            finish_str(reply.finish),
            reply.completion_tokens,
        );
    }
    Outcome::Stream {
        events,
        error_event: format!(
            "id:99\nevent:error\n:HTTP_STATUS/500\ndata:{}\n\n",
            json!({"code": "InternalError", "message": "An internal error has occured, please try again later.", "request_id": request_id})
        ),
    }
}

pub(crate) fn error(status: u16, message: &str, retry_after: Option<u64>) -> Outcome {
    let code = match status {
        400 => "InvalidParameter",
        401 => "InvalidApiKey",
        403 => "AccessDenied",
        404 => "ModelNotFound",
        408 => "RequestTimeOut",
        429 => "Throttling.RateQuota",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    let mut headers = Vec::new();
    if let Some(s) = retry_after {
        headers.push(("retry-after".to_string(), s.to_string()));
    }
    Outcome::Json {
        status,
        headers,
        body: json!({"code": code, "message": message, "request_id": "mock-error"}),
    }
}

/// Native text embeddings: `input.texts`, at most 10 a call (25 for the v1/v2 models).
fn embeddings(req: &MockRequest) -> Routed {
    let Ok(body) = req.json() else {
        return Routed::Done(error(400, "Request body is not valid JSON.", None));
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let Some(texts) = media::texts(body.pointer("/input/texts")) else {
        return Routed::Done(error(
            400,
            "Input should be a non-empty list of non-empty strings: input.texts",
            None,
        ));
    };
    let old = model.ends_with("-v1") || model.ends_with("-v2");
    let cap = if old { 25 } else { 10 };
    if texts.len() > cap {
        return Routed::Done(error(
            400,
            &format!("Value error, batch size is invalid, it should not be larger than {cap}.: input.contents"),
            None,
        ));
    }
    let dims = media::dimensions(
        body.pointer("/parameters/dimension")
            .and_then(Value::as_u64),
        if old { 1536 } else { 1024 },
    );
    let embeddings: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"text_index": i, "embedding": media::vector(t, dims)}))
        .collect();
    let tokens: u64 = texts.iter().map(|t| media::tokens(t)).sum();
    Routed::api(
        Dialect::DashScope,
        texts.first().cloned(),
        Outcome::json(
            200,
            json!({"output": {"embeddings": embeddings}, "usage": {"total_tokens": tokens},
                   "request_id": "mock-embeddings"}),
        ),
    )
}

/// Wanx text-to-image: only asynchronous over HTTP. A `[[mock task=...]]` directive in the
/// prompt decides how the task ends (fail, error, stuck in PENDING).
fn submit_image_task(req: &MockRequest, tasks: &Tasks) -> Routed {
    if req.header("x-dashscope-async") != Some("enable") {
        return Routed::Done(error(
            403,
            "current user api does not support synchronous calls",
            None,
        ));
    }
    let Ok(body) = req.json() else {
        return Routed::Done(error(400, "Request body is not valid JSON.", None));
    };
    let Some(prompt) = body.pointer("/input/prompt").and_then(Value::as_str) else {
        return Routed::Done(error(400, "Field required: input.prompt", None));
    };
    let n = body
        .pointer("/parameters/n")
        .and_then(Value::as_u64)
        .unwrap_or(4);
    if !(1..=4).contains(&n) {
        return Routed::Done(error(400, "n should be in [1, 4]", None));
    }
    if let Some(size) = body.pointer("/parameters/size").and_then(Value::as_str) {
        if !size.contains('*') {
            return Routed::Done(error(400, "size must look like 1024*1024", None));
        }
    }
    let (directive, text) = split_directive(prompt);
    let fate = directive
        .and_then(|d| Fault::parse(d).ok())
        .and_then(|f| f.task);
    let id = tasks.create(fate, n, text);
    Routed::api(
        Dialect::DashScope,
        Some(prompt.to_string()),
        Outcome::json(
            200,
            json!({"output": {"task_id": id, "task_status": "PENDING"}, "request_id": "mock-submit"}),
        ),
    )
}

struct Task {
    fate: Option<TaskFate>,
    n: u64,
    prompt: String,
    polls: u64,
    status: &'static str,
}

/// The image tasks the mock has been given: PENDING, then RUNNING at the first poll, then
/// SUCCEEDED (or FAILED) at the second; a stuck task stays PENDING.
#[derive(Default)]
pub(crate) struct Tasks {
    tasks: Mutex<HashMap<String, Task>>,
}

impl Tasks {
    fn create(&self, fate: Option<TaskFate>, n: u64, prompt: String) -> String {
        let mut tasks = self.tasks.lock().expect("mock lock");
        let id = format!("mock-task-{:06}", tasks.len() + 1);
        tasks.insert(
            id.clone(),
            Task {
                fate,
                n,
                prompt,
                polls: 0,
                status: "PENDING",
            },
        );
        id
    }

    fn poll(&self, id: &str, req: &MockRequest) -> Outcome {
        let mut tasks = self.tasks.lock().expect("mock lock");
        let Some(task) = tasks.get_mut(id) else {
            return Outcome::json(
                200,
                json!({"request_id": "mock-poll", "output": {"task_id": id, "task_status": "UNKNOWN"}}),
            );
        };
        task.polls += 1;
        if matches!(task.status, "PENDING" | "RUNNING") {
            task.status = match (task.fate, task.polls) {
                (Some(TaskFate::Stuck), _) => "PENDING",
                (_, 1) => "RUNNING",
                (Some(TaskFate::Fail | TaskFate::Error), _) => "FAILED",
                _ => "SUCCEEDED",
            };
        }
        let mut output = json!({"task_id": id, "task_status": task.status,
            "submit_time": "2026-11-27 10:00:00.000"});
        match (task.status, task.fate) {
            ("SUCCEEDED", _) => {
                let host = req.header("host").unwrap_or("127.0.0.1");
                let expires = now_secs() + 86_400;
                output["results"] = (0..task.n)
                    .map(|i| json!({"orig_prompt": task.prompt,
                        "actual_prompt": format!("{}, detailed, soft light", task.prompt),
                        "url": format!("http://{host}{RESULTS_PREFIX}{id}/{i}.png?Expires={expires}&Signature=mock")}))
                    .collect();
                output["task_metrics"] = json!({"TOTAL": task.n, "SUCCEEDED": task.n, "FAILED": 0});
            }
            ("FAILED", Some(TaskFate::Fail)) => {
                output["code"] = json!("DataInspectionFailed");
                output["message"] = json!("Output data may contain inappropriate content.");
            }
            ("FAILED", _) => {
                output["code"] = json!("InternalError.Algo");
                output["message"] = json!("mock model failed while drawing");
            }
            _ => {}
        }
        let usage = (task.status == "SUCCEEDED").then(|| json!({"image_count": task.n}));
        let mut body = json!({"request_id": "mock-poll", "output": output});
        if let Some(u) = usage {
            body["usage"] = u;
        }
        Outcome::json(200, body)
    }

    fn cancel(&self, id: &str) -> Outcome {
        let mut tasks = self.tasks.lock().expect("mock lock");
        match tasks.get_mut(id) {
            Some(t) if t.status == "PENDING" => {
                t.status = "CANCELED";
                Outcome::json(200, json!({"request_id": "mock-cancel"}))
            }
            _ => Outcome::json(
                400,
                json!({"code": "UnsupportedOperation", "request_id": "mock-cancel",
                       "message": "Failed to cancel the task, please confirm if the task is in PENDING status."}),
            ),
        }
    }

    /// Every task's status and how often it was polled, for tests.
    pub(crate) fn report(&self) -> Value {
        let tasks = self.tasks.lock().expect("mock lock");
        tasks
            .iter()
            .map(|(id, t)| (id.clone(), json!({"status": t.status, "polls": t.polls})))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}
