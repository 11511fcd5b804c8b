//! The OpenAI chat request typed into the internal model, for vendors that do not speak
//! OpenAI (and for OpenAI-kind vendors when the gateway rewrote the request).

use serde::Deserialize;
use serde_json::Value;

use super::wire::{ChatRequest, RawObject, MAX_IMAGES};
use crate::error::{GatewayError, GwResult};
use crate::providers::model::*;

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
        let messages = wire
            .into_iter()
            .enumerate()
            .map(|(i, m)| message(i, m))
            .collect::<GwResult<Vec<_>>>()?;
        let max_tokens = match member::<u64>(obj, "max_completion_tokens")? {
            Some(v) => Some(v),
            None => member::<u64>(obj, "max_tokens")?,
        };
        let stop = match member::<WireStop>(obj, "stop")? {
            None => Vec::new(),
            Some(WireStop::One(s)) => vec![s],
            Some(WireStop::Many(v)) => v,
        };
        let tools = tools(obj)?;
        let tool_choice = tool_choice(obj)?;
        let response_format = response_format(obj)?;
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
            reasoning: member::<String>(obj, "reasoning_effort")?
                .as_deref()
                .and_then(Effort::parse),
            extra,
        })
    }
}

/// One OpenAI message; the legacy `function` role and `function_call` become tool messages
/// and tool calls.
fn message(i: usize, m: WireMessage) -> GwResult<Message> {
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
    Ok(Message {
        role,
        parts,
        tool_calls,
        tool_call_id,
        name: m.name,
    })
}

fn tools(obj: &RawObject) -> GwResult<Vec<ToolDef>> {
    let mut tools = Vec::new();
    for t in member::<Vec<WireTool>>(obj, "tools")?.unwrap_or_default() {
        let f = t
            .function
            .ok_or_else(|| GatewayError::bad_param("tools", "Every tool needs a `function`."))?;
        tools.push(ToolDef {
            name: f.name,
            description: f.description,
            parameters: f
                .parameters
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        });
    }
    Ok(tools)
}

fn tool_choice(obj: &RawObject) -> GwResult<Option<ToolChoice>> {
    Ok(match member::<WireToolChoice>(obj, "tool_choice")? {
        None => None,
        Some(WireToolChoice::Mode(m)) => Some(match m.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => return Err(GatewayError::bad_param("tool_choice", format!("Invalid value: '{other}'. Supported values are: 'none', 'auto' and 'required'."))),
        }),
        Some(WireToolChoice::Named { function }) => Some(ToolChoice::Function(function.name)),
    })
}

fn response_format(obj: &RawObject) -> GwResult<Option<ResponseFormat>> {
    Ok(
        match member::<WireResponseFormat>(obj, "response_format")? {
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
        },
    )
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireInput {
    One(String),
    Many(Vec<String>),
}

impl EmbeddingsRequest {
    /// An OpenAI embeddings body, for vendors that do not take it as it is. Token-ID input is
    /// OpenAI's own; other vendors take text.
    pub fn from_openai(chat: &ChatRequest) -> GwResult<EmbeddingsRequest> {
        let obj = &chat.body;
        let texts =
            match member::<WireInput>(obj, "input") {
                Ok(Some(WireInput::One(t))) => vec![t],
                Ok(Some(WireInput::Many(v))) if !v.is_empty() => v,
                Ok(Some(WireInput::Many(_))) => {
                    return Err(GatewayError::bad_param(
                        "input",
                        "'input' must not be empty.",
                    ))
                }
                Ok(None) | Err(_) => return Err(GatewayError::bad_param(
                    "input",
                    "This model takes 'input' as a string or an array of strings (not token IDs).",
                )),
            };
        // The vectors' form is the reply's business (`ClientRequest::wants_base64`); a bad one
        // is refused here, before any vendor is called.
        match member::<String>(obj, "encoding_format")?.as_deref() {
            None | Some("float") | Some("base64") => {}
            Some(other) => {
                return Err(GatewayError::bad_param(
                    "encoding_format",
                    format!(
                    "Invalid value for 'encoding_format': '{other}'. Expected 'float' or 'base64'."
                ),
                ))
            }
        };
        let dimensions = member::<u32>(obj, "dimensions")?;
        if dimensions == Some(0) {
            return Err(GatewayError::bad_param(
                "dimensions",
                "'dimensions' must be at least 1.",
            ));
        }
        Ok(EmbeddingsRequest {
            texts,
            dimensions,
            user: member(obj, "user")?,
        })
    }
}

impl ImageRequest {
    /// An OpenAI image generation body, for vendors that do not take it as it is.
    pub fn from_openai(chat: &ChatRequest) -> GwResult<ImageRequest> {
        let obj = &chat.body;
        let prompt: String = member(obj, "prompt")?.ok_or_else(|| {
            GatewayError::bad_param("prompt", "Missing required parameter: 'prompt'.")
        })?;
        let n = member::<u32>(obj, "n")?.unwrap_or(1);
        if !(1..=MAX_IMAGES as u32).contains(&n) {
            return Err(GatewayError::bad_param(
                "n",
                format!("'n' must be between 1 and {MAX_IMAGES}."),
            ));
        }
        let size = match member::<String>(obj, "size")?.as_deref() {
            None | Some("auto") => None,
            Some(s) => Some(parse_size(s).ok_or_else(|| {
                GatewayError::bad_param(
                    "size",
                    format!(
                        "Invalid value for 'size': '{s}'. Expected WIDTHxHEIGHT, e.g. '1024x1024'."
                    ),
                )
            })?),
        };
        let inline = match member::<String>(obj, "response_format")?.as_deref() {
            None | Some("url") => false,
            Some("b64_json") => true,
            Some(other) => {
                return Err(GatewayError::bad_param(
                    "response_format",
                    format!(
                    "Invalid value for 'response_format': '{other}'. Expected 'url' or 'b64_json'."
                ),
                ))
            }
        };
        Ok(ImageRequest {
            prompt,
            negative_prompt: member(obj, "negative_prompt")?,
            n,
            size,
            inline,
            user: member(obj, "user")?,
        })
    }
}

/// `1024x1024` as (1024, 1024); sides from 1 to 16384.
fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once('x')?;
    let side = |v: &str| v.parse::<u32>().ok().filter(|v| (1..=16384).contains(v));
    Some((side(w)?, side(h)?))
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
        assert_eq!(r.call_names().get("call_1"), Some(&"f"));
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
