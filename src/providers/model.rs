//! The one internal model every vendor module translates to and from: a typed chat request,
//! a completed reply, and the deltas a stream is made of. It has no vendor fields; vendor
//! knowledge stays in the vendor modules.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Usage;
use crate::chat::{ChatRequest, RawObject};
use crate::error::{GatewayError, GwResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    /// From a `data:` URL: the media type and the base64 payload.
    Inline {
        media_type: String,
        data: String,
    },
    Url(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(Image),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the JSON text OpenAI carries them in.
    pub arguments: String,
}

impl ToolCall {
    /// The arguments as a JSON value, for vendors that carry them as an object (Anthropic
    /// `input`, Gemini `args`); empty arguments are `{}`.
    pub fn arguments_object(&self, param: &str) -> GwResult<Value> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(&self.arguments).map_err(|_| {
            GatewayError::bad_param(param, "Tool call arguments must be a JSON object.")
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
    pub tool_calls: Vec<ToolCall>,
    /// For `tool` messages: the call this answers.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

impl Message {
    /// The text parts joined; images are not text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            if let Part::Text(t) = p {
                out.push_str(t);
            }
        }
        out
    }

    pub fn has_images(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Image(_)))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { name: String, schema: Value },
}

/// A chat request, typed. `extra` keeps members the gateway does not model (vendor extensions
/// such as DashScope's `enable_thinking` or `top_k`) for vendors that take them.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub messages: Vec<Message>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    pub n: Option<u64>,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub tools: Vec<ToolDef>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<ResponseFormat>,
    pub user: Option<String>,
    pub logprobs: bool,
    pub stream: bool,
    pub include_usage: bool,
    pub extra: Vec<(String, Value)>,
}

impl Request {
    pub fn extra(&self, name: &str) -> Option<&Value> {
        self.extra.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Copies the client's vendor extensions named in `names` (e.g. DashScope's
    /// `enable_thinking`) into the vendor's body or parameters.
    pub fn copy_extras(&self, names: &[&str], into: &mut serde_json::Map<String, Value>) {
        for (k, v) in &self.extra {
            if names.contains(&k.as_str()) {
                into.insert(k.clone(), v.clone());
            }
        }
    }

    /// System and developer messages' text, joined with blank lines.
    pub fn system_text(&self) -> Option<String> {
        let parts: Vec<String> = self
            .messages
            .iter()
            .filter(|m| matches!(m.role, Role::System | Role::Developer))
            .map(Message::text)
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    /// The name of the function a tool call id refers to (Gemini and Qianfan name results by
    /// function, not by call id).
    pub fn function_name_for(&self, call_id: &str) -> Option<&str> {
        self.messages
            .iter()
            .flat_map(|m| &m.tool_calls)
            .find(|c| c.id == call_id)
            .map(|c| c.name.as_str())
    }
}

/// Appends a turn for vendors that need user and model turns to alternate (Anthropic, Gemini):
/// merged into the previous turn when the role repeats; an empty turn is dropped.
pub fn push_turn<R: PartialEq, T>(turns: &mut Vec<(R, Vec<T>)>, role: R, items: Vec<T>) {
    if items.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, existing)) if *last == role => existing.extend(items),
        _ => turns.push((role, items)),
    }
}

// --- parsing the OpenAI request -------------------------------------------------------------

#[derive(Deserialize)]
struct WireMessage {
    role: Role,
    #[serde(default)]
    content: Option<WireContent>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    function_call: Option<WireFunction>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireContent {
    Text(String),
    Parts(Vec<WirePart>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WirePart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: WireImageUrl,
    },
    #[serde(other)]
    Unsupported,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireImageUrl {
    Object { url: String },
    Plain(String),
}

#[derive(Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct WireTool {
    #[serde(default)]
    function: Option<WireToolFunction>,
}

#[derive(Deserialize)]
struct WireToolFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireToolChoice {
    Mode(String),
    Named { function: WireNamed },
}

#[derive(Deserialize)]
struct WireNamed {
    name: String,
}

#[derive(Deserialize)]
struct WireResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    json_schema: Option<WireJsonSchema>,
}

#[derive(Deserialize)]
struct WireJsonSchema {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    schema: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireStop {
    One(String),
    Many(Vec<String>),
}

pub fn parse_image_url(url: &str) -> Image {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            if let Some(media_type) = meta.strip_suffix(";base64") {
                return Image::Inline {
                    media_type: media_type.to_string(),
                    data: data.to_string(),
                };
            }
        }
    }
    Image::Url(url.to_string())
}

fn member<T: for<'de> Deserialize<'de>>(obj: &RawObject, name: &str) -> GwResult<Option<T>> {
    match obj.get(name) {
        None => Ok(None),
        Some(v) if v.get() == "null" => Ok(None),
        Some(v) => serde_json::from_str(v.get())
            .map(Some)
            .map_err(|e| GatewayError::bad_param(name, format!("Invalid value for '{name}': {e}"))),
    }
}

const MODELED: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
    "logprobs",
    "top_logprobs",
    "stream",
    "stream_options",
    "functions",
    "function_call",
    "logit_bias",
    "store",
    "metadata",
    "service_tier",
    "modalities",
    "prediction",
    "audio",
    "reasoning_effort",
];

impl Request {
    /// Types a validated OpenAI chat request (see `ChatRequest::parse`).
    pub fn from_openai(chat: &ChatRequest) -> GwResult<Request> {
        let obj = &chat.body;
        let wire: Vec<WireMessage> = member(obj, "messages")?.unwrap_or_default();
        let mut messages = Vec::with_capacity(wire.len());
        for (i, m) in wire.into_iter().enumerate() {
            let mut parts = Vec::new();
            match m.content {
                None => {}
                Some(WireContent::Text(t)) => parts.push(Part::Text(t)),
                Some(WireContent::Parts(ps)) => {
                    for p in ps {
                        parts.push(match p {
                            WirePart::Text { text } => Part::Text(text),
                            WirePart::ImageUrl { image_url } => {
                                Part::Image(parse_image_url(match &image_url {
                                    WireImageUrl::Object { url } | WireImageUrl::Plain(url) => url,
                                }))
                            }
                            WirePart::Unsupported => {
                                return Err(GatewayError::bad_param(
                                    &format!("messages[{i}].content"),
                                    "Only text and image_url content parts are supported.",
                                ))
                            }
                        });
                    }
                }
            }
            let mut tool_calls: Vec<ToolCall> = m
                .tool_calls
                .unwrap_or_default()
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.function.name,
                    arguments: c.function.arguments,
                })
                .collect();
            if let Some(f) = m.function_call {
                tool_calls.push(ToolCall {
                    id: format!("call_{i}"),
                    name: f.name,
                    arguments: f.arguments,
                });
            }
            let role = if m.role == Role::Function {
                Role::Tool
            } else {
                m.role
            };
            let tool_call_id = match (role, m.tool_call_id) {
                (Role::Tool, None) if m.name.is_some() => {
                    Some(format!("fn:{}", m.name.clone().unwrap_or_default()))
                }
                (_, id) => id,
            };
            messages.push(Message {
                role,
                parts,
                tool_calls,
                tool_call_id,
                name: m.name,
            });
        }
        let max_tokens = match member::<u64>(obj, "max_completion_tokens")? {
            Some(v) => Some(v),
            None => member::<u64>(obj, "max_tokens")?,
        };
        let stop = match member::<WireStop>(obj, "stop")? {
            None => Vec::new(),
            Some(WireStop::One(s)) => vec![s],
            Some(WireStop::Many(v)) => v,
        };
        let mut tools = Vec::new();
        for t in member::<Vec<WireTool>>(obj, "tools")?.unwrap_or_default() {
            let f = t.function.ok_or_else(|| {
                GatewayError::bad_param("tools", "Every tool needs a `function`.")
            })?;
            tools.push(ToolDef {
                name: f.name,
                description: f.description,
                parameters: f
                    .parameters
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            });
        }
        let tool_choice = match member::<WireToolChoice>(obj, "tool_choice")? {
            None => None,
            Some(WireToolChoice::Mode(m)) => Some(match m.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => return Err(GatewayError::bad_param("tool_choice", format!("Invalid value: '{other}'. Supported values are: 'none', 'auto' and 'required'."))),
            }),
            Some(WireToolChoice::Named { function }) => Some(ToolChoice::Function(function.name)),
        };
        let response_format = match member::<WireResponseFormat>(obj, "response_format")? {
            None => None,
            Some(f) => Some(match f.kind.as_str() {
                "text" => ResponseFormat::Text,
                "json_object" => ResponseFormat::JsonObject,
                "json_schema" => {
                    let s = f.json_schema.ok_or_else(|| {
                        GatewayError::bad_param(
                            "response_format.json_schema",
                            "Missing required parameter: 'response_format.json_schema'.",
                        )
                    })?;
                    ResponseFormat::JsonSchema {
                        name: s.name.unwrap_or_else(|| "response".into()),
                        schema: s.schema.unwrap_or(Value::Null),
                    }
                }
                other => {
                    return Err(GatewayError::bad_param(
                        "response_format.type",
                        format!("Invalid value: '{other}'."),
                    ))
                }
            }),
        };
        let extra = obj
            .members
            .iter()
            .filter(|(k, _)| !MODELED.contains(&k.as_ref()))
            .filter_map(|(k, v)| {
                serde_json::from_str(v.get())
                    .ok()
                    .map(|v| (k.to_string(), v))
            })
            .collect();
        Ok(Request {
            messages,
            temperature: member(obj, "temperature")?,
            top_p: member(obj, "top_p")?,
            max_tokens,
            n: member(obj, "n")?,
            stop,
            seed: member(obj, "seed")?,
            presence_penalty: member(obj, "presence_penalty")?,
            frequency_penalty: member(obj, "frequency_penalty")?,
            tools,
            tool_choice,
            parallel_tool_calls: member(obj, "parallel_tool_calls")?,
            response_format,
            user: member(obj, "user")?,
            logprobs: member::<bool>(obj, "logprobs")?.unwrap_or(false),
            stream: chat.stream,
            include_usage: chat.include_usage,
            extra,
        })
    }

    /// Rejects what a vendor cannot honour, naming the parameter.
    pub fn reject_n_above_one(&self, vendor: &str) -> GwResult<()> {
        if self.n.is_some_and(|n| n > 1) {
            return Err(GatewayError::bad_param(
                "n",
                format!("n > 1 is not supported by {vendor} models."),
            ));
        }
        Ok(())
    }

    pub fn reject_logprobs(&self, vendor: &str) -> GwResult<()> {
        if self.logprobs {
            return Err(GatewayError::bad_param(
                "logprobs",
                format!("logprobs are not supported by {vendor} models."),
            ));
        }
        Ok(())
    }

    pub fn reject_images(&self, vendor: &str) -> GwResult<()> {
        if let Some(i) = self.messages.iter().position(Message::has_images) {
            return Err(GatewayError::bad_param(
                &format!("messages[{i}].content"),
                format!("Image inputs are not supported by {vendor} models."),
            ));
        }
        Ok(())
    }
}

// --- the reply ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    pub fn as_openai(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }

    pub fn from_openai(s: &str) -> FinishReason {
        match s {
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" | "sensitive" => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub finish: FinishReason,
}

/// A vendor's complete reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub choices: Vec<Choice>,
    pub usage: Option<Usage>,
}

/// One step of a stream, as every vendor decoder reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Text(String),
    Reasoning(String),
    /// A new tool call; `index` counts tool calls, not content blocks.
    ToolStart {
        index: usize,
        id: String,
        name: String,
    },
    ToolArgs {
        index: usize,
        arguments: String,
    },
    Finish(FinishReason),
    Usage(Usage),
    /// The vendor's stream ended properly.
    Done,
    Error(GatewayError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_an_openai_request() {
        let body = br#"{"model":"m","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBOR"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            {"role":"tool","tool_call_id":"call_1","content":"42"}],
            "stop":"END","max_tokens":9,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
            "tool_choice":{"type":"function","function":{"name":"f"}},"enable_thinking":true}"#;
        let chat = ChatRequest::parse(body).unwrap();
        let r = Request::from_openai(&chat).unwrap();
        assert_eq!(r.system_text().as_deref(), Some("be brief"));
        assert_eq!(
            r.messages[1].parts[1],
            Part::Image(Image::Inline {
                media_type: "image/png".into(),
                data: "iVBOR".into()
            })
        );
        assert_eq!(r.messages[2].tool_calls[0].arguments, "{\"a\":1}");
        assert_eq!(r.function_name_for("call_1"), Some("f"));
        assert_eq!(
            (r.stop.clone(), r.max_tokens),
            (vec!["END".to_string()], Some(9))
        );
        assert_eq!(r.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(r.extra("enable_thinking"), Some(&Value::Bool(true)));
    }

    #[test]
    fn rejects_unsupported_parts_with_the_parameter() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#;
        let chat = ChatRequest::parse(body).unwrap();
        let e = Request::from_openai(&chat).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
    }
}
