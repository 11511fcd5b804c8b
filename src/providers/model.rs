//! The one internal model every vendor module translates to and from: a typed chat request,
//! a completed reply, and the deltas a stream is made of. It has no vendor fields; vendor
//! knowledge stays in the vendor modules.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Usage;
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Image {
    /// From a `data:` URL: the media type and the base64 payload.
    Inline {
        media_type: String,
        data: String,
    },
    Url(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// How hard the model is to think, when the client said so explicitly (OpenAI's
    /// `reasoning_effort`, the Responses API's `reasoning.effort`, Anthropic's `thinking` with a
    /// budget): each vendor's thinking control where it has one.
    pub reasoning: Option<Effort>,
    pub extra: Vec<(String, Value)>,
}

/// A reasoning effort, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    /// Thinking off.
    Off,
    Minimal,
    Low,
    Medium,
    High,
}

impl Effort {
    /// OpenAI's name (`none`, `minimal`, `low`, `medium`, `high`; `xhigh` is taken as high).
    pub fn parse(name: &str) -> Option<Effort> {
        Some(match name {
            "none" => Effort::Off,
            "minimal" => Effort::Minimal,
            "low" => Effort::Low,
            "medium" => Effort::Medium,
            "high" | "xhigh" => Effort::High,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Effort::Off => "none",
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
        }
    }

    /// A thinking budget in tokens, for vendors that take one (None: thinking off). Anthropic's
    /// least is 1,024.
    pub fn budget(self) -> Option<u64> {
        match self {
            Effort::Off => None,
            Effort::Minimal => Some(1024),
            Effort::Low => Some(2048),
            Effort::Medium => Some(8192),
            Effort::High => Some(24576),
        }
    }

    /// The effort a thinking budget asks for.
    pub fn of_budget(tokens: u64) -> Effort {
        match tokens {
            0 => Effort::Off,
            1..=1024 => Effort::Minimal,
            1025..=2048 => Effort::Low,
            2049..=8192 => Effort::Medium,
            _ => Effort::High,
        }
    }
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

    /// The function each tool call id names, for vendors that name results by function (Gemini,
    /// DashScope, Qianfan):
    /// built once per request, so a long conversation is not scanned once per tool result.
    pub fn call_names(&self) -> HashMap<&str, &str> {
        self.messages
            .iter()
            .flat_map(|m| &m.tool_calls)
            .map(|c| (c.id.as_str(), c.name.as_str()))
            .collect()
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

/// An image given as a URL; `data:` URLs become inline images.
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

impl Request {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub finish: FinishReason,
}

/// A vendor's complete reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub choices: Vec<Choice>,
    pub usage: Option<Usage>,
}

/// Puts a stream's deltas back together into the complete reply (for the response cache).
#[derive(Default)]
pub struct CompletionBuilder {
    content: String,
    reasoning: String,
    tool_calls: Vec<ToolCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    done: bool,
}

impl CompletionBuilder {
    pub fn add(&mut self, d: &Delta) {
        match d {
            Delta::Text(t) => self.content.push_str(t),
            Delta::Reasoning(t) => self.reasoning.push_str(t),
            Delta::ToolStart { index, id, name } => {
                if self.tool_calls.len() <= *index {
                    self.tool_calls.resize(
                        index + 1,
                        ToolCall {
                            id: String::new(),
                            name: String::new(),
                            arguments: String::new(),
                        },
                    );
                }
                self.tool_calls[*index].id = id.clone();
                self.tool_calls[*index].name = name.clone();
            }
            Delta::ToolArgs { index, arguments } => {
                if let Some(call) = self.tool_calls.get_mut(*index) {
                    call.arguments.push_str(arguments);
                }
            }
            Delta::Finish(f) => self.finish = Some(*f),
            Delta::Usage(u) => self.usage = Some(*u),
            Delta::Done => self.done = true,
            Delta::Error(_) => {}
        }
    }

    /// The reply, when the stream ended properly with a finish reason.
    pub fn complete(&self) -> Option<Completion> {
        let finish = self.finish.filter(|_| self.done)?;
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        Some(Completion {
            choices: vec![Choice {
                content: some(&self.content),
                reasoning: some(&self.reasoning),
                tool_calls: self.tool_calls.clone(),
                finish,
            }],
            usage: self.usage,
        })
    }
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

/// An embeddings request: the texts in order and what the client asked of the vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    pub texts: Vec<String>,
    pub dimensions: Option<u32>,
    pub user: Option<String>,
}

/// One vector per input text, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u64,
}

/// An image generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub n: u32,
    /// Width and height in pixels, when the client named a size.
    pub size: Option<(u32, u32)>,
    /// The client wants the image bytes (`b64_json`), not a URL.
    pub inline: bool,
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageData {
    /// Where the vendor keeps the image (DashScope: a signed URL valid for 24 hours).
    Url(String),
    Inline {
        media_type: String,
        base64: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedImage {
    pub data: ImageData,
    pub revised_prompt: Option<String>,
}

/// Generated images, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub created: u64,
    pub images: Vec<GeneratedImage>,
}
