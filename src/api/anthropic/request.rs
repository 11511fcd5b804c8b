//! `POST /v1/messages` requests: Anthropic's wire shape as serde types, typed into the internal
//! model. A member of the wrong type is a 400 that names it; members the gateway does not
//! model are ignored, as Anthropic's own API ignores unknown ones. Claude Code's requests are
//! taken as they come: system messages inside `messages` (the mid-conversation-system beta),
//! `thinking`, `output_config`, `context_management` and `cache_control` (ignored for vendors
//! without them), block types the gateway does not know (left out), and server tools (left
//! out: only Anthropic runs them).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{GatewayError, GwResult};
use crate::providers::model::{
    parse_image_url, Effort, Image, Message, Part, Request, Role, ToolCall, ToolChoice, ToolDef,
};
use crate::providers::openai::wire::invalid_json;

#[derive(Deserialize)]
struct MessagesRequest {
    model: Option<String>,
    max_tokens: Option<u64>,
    messages: Option<Vec<WireMessage>>,
    system: Option<TextBlocks>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u64>,
    stop_sequences: Option<Vec<String>>,
    stream: Option<bool>,
    tools: Option<Vec<WireTool>>,
    tool_choice: Option<WireToolChoice>,
    metadata: Option<Metadata>,
    thinking: Option<Thinking>,
}

/// Anthropic's thinking switch. Only an explicit one is mapped to other vendors' controls:
/// `adaptive` leaves the choice to the model, so they get none.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Thinking {
    Enabled {
        budget_tokens: u64,
    },
    Disabled,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireMessage {
    role: WireRole,
    content: Content,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum WireRole {
    User,
    Assistant,
    System,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default = "empty_object")]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<TextBlocks>,
    },
    Thinking {},
    RedactedThinking {},
    /// A block type added since (documents, server tool results, …): not for other vendors.
    #[serde(other)]
    Other,
}

fn empty_object() -> Value {
    json!({})
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

/// A string, or a list of blocks of which only the text is kept (system prompts, tool results).
#[derive(Deserialize)]
#[serde(untagged)]
enum TextBlocks {
    Text(String),
    Blocks(Vec<LooseBlock>),
}

#[derive(Deserialize)]
struct LooseBlock {
    #[serde(default)]
    text: Option<String>,
}

impl TextBlocks {
    fn into_text(self) -> String {
        match self {
            TextBlocks::Text(s) => s,
            TextBlocks::Blocks(blocks) => blocks.into_iter().filter_map(|b| b.text).collect(),
        }
    }
}

#[derive(Deserialize)]
struct WireTool {
    name: String,
    description: Option<String>,
    input_schema: Option<Value>,
    /// A server tool's type (`web_search_20250305`, …); absent or `custom` for a client tool.
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireToolChoice {
    Auto {
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        disable_parallel_tool_use: Option<bool>,
    },
    None {},
}

#[derive(Deserialize)]
struct Metadata {
    user_id: Option<String>,
}

fn required(field: &str) -> GatewayError {
    GatewayError::bad_param(field, format!("{field}: Field required"))
}

/// Parses the body, naming the member at fault when a type is wrong.
fn deserialize(body: &[u8]) -> GwResult<MessagesRequest> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let wire: MessagesRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() && path != "." {
            GatewayError::bad_param(&path, format!("{path}: {inner}"))
        } else if inner.is_data() {
            GatewayError::invalid("The request body must be a JSON object.", None)
        } else {
            invalid_json(inner)
        }
    })?;
    de.end().map_err(invalid_json)?;
    Ok(wire)
}

/// Types an Anthropic Messages request; the public model name is returned beside it.
pub fn parse_request(body: &[u8]) -> GwResult<(String, Request)> {
    parse(body, true)
}

/// A `count_tokens` body: a Messages request without `max_tokens`.
pub fn parse_request_for_count(body: &[u8]) -> GwResult<(String, Request)> {
    parse(body, false)
}

fn parse(body: &[u8], needs_max_tokens: bool) -> GwResult<(String, Request)> {
    let wire = deserialize(body)?;
    let model = wire
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| required("model"))?;
    let max_tokens = match wire.max_tokens {
        Some(n) => Some(n),
        None if needs_max_tokens => return Err(required("max_tokens")),
        None => None,
    };
    let messages = wire.messages.ok_or_else(|| required("messages"))?;
    let mut req = Request {
        max_tokens,
        include_usage: true,
        temperature: wire.temperature,
        top_p: wire.top_p,
        stop: wire.stop_sequences.unwrap_or_default(),
        stream: wire.stream.unwrap_or(false),
        user: wire.metadata.and_then(|m| m.user_id),
        reasoning: match wire.thinking {
            Some(Thinking::Enabled { budget_tokens }) => Some(Effort::of_budget(budget_tokens)),
            Some(Thinking::Disabled) => Some(Effort::Off),
            Some(Thinking::Other) | None => None,
        },
        ..Request::default()
    };
    let system = wire.system.map(TextBlocks::into_text).unwrap_or_default();
    if !system.is_empty() {
        req.messages
            .push(message(Role::System, vec![Part::Text(system)], vec![]));
    }
    for (i, m) in messages.into_iter().enumerate() {
        push_message(&mut req.messages, m, i)?;
    }
    if req.messages.iter().all(|m| m.role == Role::System) {
        return Err(GatewayError::bad_param(
            "messages",
            "at least one message is required",
        ));
    }
    if let Some(k) = wire.top_k {
        req.extra.push(("top_k".into(), json!(k)));
    }
    req.tools = wire
        .tools
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.kind.as_deref().is_none_or(|k| k == "custom"))
        .map(|t| ToolDef {
            name: t.name,
            description: t.description,
            parameters: t.input_schema.unwrap_or_else(|| json!({"type": "object"})),
        })
        .collect();
    if let Some(choice) = wire.tool_choice {
        let (choice, no_parallel) = match choice {
            WireToolChoice::Auto {
                disable_parallel_tool_use,
            } => (ToolChoice::Auto, disable_parallel_tool_use),
            WireToolChoice::Any {
                disable_parallel_tool_use,
            } => (ToolChoice::Required, disable_parallel_tool_use),
            WireToolChoice::Tool {
                name,
                disable_parallel_tool_use,
            } => (ToolChoice::Function(name), disable_parallel_tool_use),
            WireToolChoice::None {} => (ToolChoice::None, None),
        };
        req.tool_choice = Some(choice);
        if no_parallel == Some(true) {
            req.parallel_tool_calls = Some(false);
        }
    }
    Ok((model, req))
}

fn message(role: Role, parts: Vec<Part>, tool_calls: Vec<ToolCall>) -> Message {
    Message {
        role,
        parts,
        tool_calls,
        tool_call_id: None,
        name: None,
    }
}

/// One Anthropic message: tool results become messages of their own (as in the internal model
/// and OpenAI's), the rest one message of text, images and tool calls.
fn push_message(out: &mut Vec<Message>, m: WireMessage, index: usize) -> GwResult<()> {
    let role = match m.role {
        WireRole::User => Role::User,
        WireRole::Assistant => Role::Assistant,
        WireRole::System => Role::System,
    };
    let blocks = match m.content {
        Content::Text(s) => vec![Block::Text { text: s }],
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block {
            Block::Text { text } => parts.push(Part::Text(text)),
            Block::Image { source } => parts.push(Part::Image(match source {
                ImageSource::Base64 { media_type, data } => Image::Inline { media_type, data },
                ImageSource::Url { url } => parse_image_url(&url),
            })),
            Block::ToolUse { id, name, input } => {
                if id.is_empty() {
                    return Err(GatewayError::bad_param(
                        &format!("messages[{index}].content"),
                        "a tool_use block needs an id",
                    ));
                }
                tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments: input.to_string(),
                })
            }
            Block::ToolResult {
                tool_use_id,
                content,
            } => out.push(Message {
                tool_call_id: Some(tool_use_id),
                ..message(
                    Role::Tool,
                    vec![Part::Text(
                        content.map(TextBlocks::into_text).unwrap_or_default(),
                    )],
                    vec![],
                )
            }),
            Block::Thinking {} | Block::RedactedThinking {} | Block::Other => {}
        }
    }
    if !parts.is_empty() || !tool_calls.is_empty() {
        out.push(message(role, parts, tool_calls));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_system_blocks_and_tool_results() {
        let (model, r) = parse_request(br#"{"model":"m","max_tokens":100,"system":[{"type":"text","text":"sys"}],
            "messages":[{"role":"user","content":"hi"},
              {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"w","input":{"a":1}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"42"},{"type":"text","text":"thanks"}]}],
            "tools":[{"name":"w","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"},"stream":true}"#).unwrap();
        assert_eq!(model, "m");
        assert_eq!(r.system_text().as_deref(), Some("sys"));
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::User
            ]
        );
        assert_eq!(r.messages[2].tool_calls[0].arguments, r#"{"a":1}"#);
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("t1"));
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        assert!(r.stream && r.include_usage);
    }

    #[test]
    fn takes_claude_codes_requests() {
        let body = br#"{"model":"m","max_tokens":32000,"stream":true,
            "system":[{"type":"text","text":"You are Claude Code.","cache_control":{"type":"ephemeral"}}],
            "messages":[
              {"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]},
              {"role":"system","content":"Agent types: general."},
              {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"sig"},{"type":"text","text":"ok"}]},
              {"role":"user","content":[{"type":"document","source":{"type":"text","data":"x"}},{"type":"text","text":"go"}]}],
            "tools":[{"name":"Bash","input_schema":{"type":"object"}},{"type":"web_search_20250305","name":"web_search"}],
            "metadata":{"user_id":"{\"device_id\":\"d\"}"},
            "thinking":{"type":"adaptive"},"output_config":{"effort":"high"},
            "context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]}}"#;
        let (_, r) = parse_request(body).unwrap();
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::System,
                Role::Assistant,
                Role::User
            ]
        );
        assert_eq!(r.tools.len(), 1, "the server tool is left out");
        assert_eq!(r.user.as_deref(), Some(r#"{"device_id":"d"}"#));
    }

    #[test]
    fn requires_max_tokens_and_model() {
        assert_eq!(
            parse_request(br#"{"model":"m","messages":[]}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            parse_request(br#"{"max_tokens":1,"messages":[]}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("model")
        );
    }

    #[test]
    fn wrong_types_and_incomplete_blocks_name_the_member() {
        let base = |extra: &str| {
            format!(
                r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}]{extra}}}"#
            )
        };
        let e = parse_request(base(r#","temperature":"hot""#).as_bytes()).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert_eq!(e.status(), 400);
        let huge =
            br#"{"model":"m","max_tokens":1e30,"messages":[{"role":"user","content":"hi"}]}"#;
        let e = parse_request(huge).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        let no_id = br#"{"model":"m","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","name":"f","input":{}}]}]}"#;
        let e = parse_request(no_id).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message.contains("id"), "{}", e.message);
        let e = parse_request(br#"[1]"#).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(parse_request(b"{\"model\":\"m\"").is_err());
    }
}
