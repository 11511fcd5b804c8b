//! What every mock vendor shares: the conversation read from a request, the deterministic reply
//! to it, and the faults a test can ask for.

use serde_json::{json, Map, Value};

/// Faults and shaping a test asks for, from a `[[mock ...]]` directive in the last user
/// message, an `x-mock-fault` header, or a sticky fault set through `/__mock/fault`.
/// Syntax: space-separated `key=value` pairs and flags, e.g. `status=429 retry_after=2`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Fault {
    /// Answer with this HTTP status and the vendor's error body for it.
    pub(crate) status: Option<u16>,
    /// `Retry-After` seconds on a 429/503 (and Gemini's `retryDelay`).
    pub(crate) retry_after: Option<u64>,
    /// Delay before the response header: the time to first byte.
    pub(crate) latency_ms: u64,
    /// Delay between stream events.
    pub(crate) chunk_delay_ms: u64,
    /// Reply with exactly this many words.
    pub(crate) words: Option<usize>,
    /// Close the connection after this many stream events (0: before any response).
    pub(crate) reset_after: Option<usize>,
    /// Send a malformed event after this many stream events.
    pub(crate) malformed_after: Option<usize>,
    /// Send the vendor's in-stream error event after this many stream events.
    pub(crate) error_after: Option<usize>,
    /// Reply 200 with a body that is not JSON (or not SSE).
    pub(crate) garbage: bool,
    /// Never answer.
    pub(crate) hang: bool,
    /// DashScope image tasks: how the task ends.
    pub(crate) task: Option<TaskFate>,
    /// Qianfan v1: answer HTTP 200 with this `error_code`.
    pub(crate) qianfan_code: Option<u64>,
    /// Every reply word is the time it was written (`ts` + 16-digit µs since the epoch), so a
    /// benchmark can measure each chunk's delay on the way to the client.
    pub(crate) stamp: bool,
}

/// The most words a reply may have, and the longest delay a test may ask for: the mocks run
/// in the gateway's own process in the offline config.
pub(crate) const MAX_WORDS: u64 = 100_000;
pub(crate) const MAX_DELAY_MS: u64 = 600_000;

/// The placeholder a stamped reply carries until the event is written.
pub(crate) const STAMP: &str = "@@T@@";

impl Fault {
    pub(crate) fn parse(spec: &str) -> Result<Fault, String> {
        let mut f = Fault::default();
        for item in spec.split_whitespace() {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            let num = || -> Result<u64, String> {
                v.parse()
                    .map_err(|_| format!("`{item}`: expected a number"))
            };
            match k {
                "status" => f.status = Some(num()? as u16),
                "retry_after" => f.retry_after = Some(num()?),
                "latency_ms" | "ttfb_ms" => f.latency_ms = num()?.min(MAX_DELAY_MS),
                "chunk_delay_ms" => f.chunk_delay_ms = num()?.min(MAX_DELAY_MS),
                "words" => f.words = Some(num()?.min(MAX_WORDS) as usize),
                "reset_after" => f.reset_after = Some(num()? as usize),
                "malformed_after" => f.malformed_after = Some(num()? as usize),
                "error_after" => f.error_after = Some(num()? as usize),
                "garbage" => f.garbage = true,
                "hang" => f.hang = true,
                "stamp" => f.stamp = true,
                "qianfan_code" => f.qianfan_code = Some(num()?),
                "task" => {
                    f.task = Some(match v {
                        "fail" => TaskFate::Fail,
                        "error" => TaskFate::Error,
                        "stuck" => TaskFate::Stuck,
                        _ => return Err(format!("`{item}`: expected fail, error or stuck")),
                    })
                }
                _ => return Err(format!("unknown mock directive `{k}`")),
            }
        }
        Ok(f)
    }

    /// Later sources override earlier ones field by field.
    pub(crate) fn merge(mut self, other: &Fault) -> Fault {
        macro_rules! take {
            ($($opt:ident),*) => { $( if other.$opt.is_some() { self.$opt = other.$opt; } )* };
        }
        take!(
            status,
            retry_after,
            words,
            reset_after,
            malformed_after,
            error_after,
            qianfan_code,
            task
        );
        if other.latency_ms > 0 {
            self.latency_ms = other.latency_ms;
        }
        if other.chunk_delay_ms > 0 {
            self.chunk_delay_ms = other.chunk_delay_ms;
        }
        self.garbage |= other.garbage;
        self.hang |= other.hang;
        self.stamp |= other.stamp;
        self
    }
}

/// How a mock DashScope image task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskFate {
    /// FAILED with a content-moderation code (the client's to fix).
    Fail,
    /// FAILED with an internal error (the vendor's).
    Error,
    /// Never leaves PENDING.
    Stuck,
}

/// Finds `[[mock ...]]` in a text; returns the directive and the text without it.
pub(crate) fn split_directive(text: &str) -> (Option<&str>, String) {
    if let Some(start) = text.find("[[mock") {
        if let Some(len) = text[start..].find("]]") {
            let inner = text[start + 6..start + len].trim();
            let rest = format!("{}{}", &text[..start], &text[start + len + 2..]);
            return (Some(inner), rest.trim().to_string());
        }
    }
    (None, text.to_string())
}

#[derive(Debug, Clone)]
pub(crate) struct Tool {
    pub(crate) name: String,
    pub(crate) schema: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolChoice {
    Auto,
    None,
    Required,
    Named(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LastTurn {
    User(String),
    ToolResult(String),
    Other,
}

/// A request, as any vendor's mock reads it.
#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    pub(crate) model: String,
    /// Every text the model was given (system, messages, tool results): the prompt tokens.
    pub(crate) texts: Vec<String>,
    pub(crate) last: LastTurn,
    pub(crate) tools: Vec<Tool>,
    pub(crate) tool_choice: ToolChoice,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    pub(crate) max_tokens: Option<u64>,
    /// Parts that were images, counted so tests can see they arrived.
    pub(crate) images: usize,
    /// Vendor-specific request options the reply depends on (DashScope's `parameters`).
    pub(crate) options: Value,
    /// The thinking control the request carried, as the vendor names it (recorded for tests),
    /// and whether it asks for the model's thoughts in the reply.
    pub(crate) thinking: Option<String>,
    pub(crate) thinks: bool,
}

impl Conversation {
    pub(crate) fn new(model: impl Into<String>) -> Self {
        Conversation {
            model: model.into(),
            texts: Vec::new(),
            last: LastTurn::Other,
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            stream: false,
            include_usage: false,
            max_tokens: None,
            images: 0,
            options: Value::Null,
            thinking: None,
            thinks: false,
        }
    }

    pub(crate) fn last_user_text(&self) -> Option<&str> {
        match &self.last {
            LastTurn::User(t) => Some(t),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    Length,
    ToolCalls,
}

#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) arguments: String,
}

/// The deterministic answer to a conversation.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// The words of the text reply; streamed one per event, joined with spaces.
    pub(crate) words: Vec<String>,
    /// What the model thought first, when the request asked for thoughts (text replies only).
    pub(crate) reasoning: Option<String>,
    pub(crate) tool_call: Option<ToolCall>,
    pub(crate) finish: Finish,
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
}

impl Reply {
    /// Of the completion tokens, those spent thinking.
    pub(crate) fn reasoning_tokens(&self) -> u64 {
        self.reasoning.as_deref().map_or(0, count_tokens)
    }

    pub(crate) fn text(&self) -> String {
        self.words.join(" ")
    }

    /// The stream pieces: the first word bare, every later one with its leading space, so that
    /// the pieces concatenate to `text()`.
    pub(crate) fn pieces(&self) -> Vec<String> {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w.clone() } else { format!(" {w}") })
            .collect()
    }

    /// Tool arguments in three pieces, as vendors stream them.
    pub(crate) fn argument_pieces(&self) -> Vec<String> {
        let Some(call) = &self.tool_call else {
            return Vec::new();
        };
        let chars: Vec<char> = call.arguments.chars().collect();
        let third = chars.len().div_ceil(3).max(1);
        chars.chunks(third).map(|c| c.iter().collect()).collect()
    }
}

pub(crate) fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

const LOREM: [&str; 12] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima",
];

pub(crate) fn reply_to(conv: &Conversation, vendor: &str, fault: &Fault, call_id: String) -> Reply {
    let prompt_tokens = conv
        .texts
        .iter()
        .map(|t| count_tokens(t))
        .sum::<u64>()
        .max(1);
    let wants_tool = matches!(conv.last, LastTurn::User(_))
        && !conv.tools.is_empty()
        && conv.tool_choice != ToolChoice::None;
    if wants_tool {
        let tool = match &conv.tool_choice {
            ToolChoice::Named(name) => conv
                .tools
                .iter()
                .find(|t| &t.name == name)
                .unwrap_or(&conv.tools[0]),
            _ => &conv.tools[0],
        };
        let arguments = example_for_schema(&tool.schema).to_string();
        let completion_tokens = (arguments.len() as u64).div_ceil(4).max(1);
        return Reply {
            words: Vec::new(),
            reasoning: None,
            tool_call: Some(ToolCall {
                id: call_id,
                name: tool.name.clone(),
                arguments,
            }),
            finish: Finish::ToolCalls,
            prompt_tokens,
            completion_tokens,
        };
    }
    let mut words: Vec<String> = match (fault.words, &conv.last) {
        (Some(n), _) if fault.stamp => vec![STAMP.to_string(); n],
        (Some(n), _) => (0..n).map(|i| LOREM[i % LOREM.len()].to_string()).collect(),
        (None, LastTurn::ToolResult(result)) => {
            let mut w: Vec<String> = ["The", "tool", "returned:"].map(String::from).to_vec();
            w.extend(result.split_whitespace().take(24).map(String::from));
            w
        }
        (None, LastTurn::User(text)) => {
            let mut w: Vec<String> = ["Mock", vendor, "reply", "to:"].map(String::from).to_vec();
            w.extend(text.split_whitespace().take(16).map(String::from));
            w
        }
        (None, LastTurn::Other) => ["Mock", vendor, "reply."].map(String::from).to_vec(),
    };
    let mut finish = Finish::Stop;
    if let Some(max) = conv.max_tokens {
        if (words.len() as u64) > max {
            words.truncate(max as usize);
            finish = Finish::Length;
        }
    }
    let reasoning = conv.thinks.then(|| "Mock thinking it over.".to_string());
    // Thinking is output too: every vendor counts it in the output tokens.
    let completion_tokens = words.len() as u64 + reasoning.as_deref().map_or(0, count_tokens);
    Reply {
        words,
        reasoning,
        tool_call: None,
        finish,
        prompt_tokens,
        completion_tokens,
    }
}

/// An instance of a JSON schema with every required property filled in.
pub(crate) fn example_for_schema(schema: &Value) -> Value {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if let Some(first) = values.first() {
            return first.clone();
        }
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut obj = Map::new();
            let props = schema.get("properties").and_then(Value::as_object);
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let sub = props
                    .and_then(|p| p.get(name))
                    .cloned()
                    .unwrap_or(json!({}));
                obj.insert(name.to_string(), example_for_schema(&sub));
            }
            Value::Object(obj)
        }
        "array" => match schema.get("items") {
            Some(items) if schema.get("minItems").and_then(Value::as_u64).unwrap_or(0) > 0 => {
                json!([example_for_schema(items)])
            }
            _ => json!([]),
        },
        "integer" => json!(1),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => json!("example"),
    }
}

/// Text of an OpenAI-style `content`: a string, or an array of parts of which the text parts
/// count; image parts are counted in `images`.
pub(crate) fn openai_content_text(content: &Value, images: &mut usize) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => out.push(
                        p.get("text")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    ),
                    Some("image_url") => *images += 1,
                    _ => {}
                }
            }
            out.join(" ")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse_and_strip() {
        let (d, rest) = split_directive("hello [[mock status=429 retry_after=2]] there");
        assert_eq!(rest, "hello  there");
        let f = Fault::parse(d.unwrap()).unwrap();
        assert_eq!((f.status, f.retry_after), (Some(429), Some(2)));
        assert!(Fault::parse("bogus=1").is_err());
        // What a client asks of the mock is clamped: it runs in the gateway's process.
        let f = Fault::parse("words=100000000 latency_ms=99999999999").unwrap();
        assert_eq!((f.words, f.latency_ms), (Some(100_000), MAX_DELAY_MS));
    }

    #[test]
    fn schema_examples_fill_required_fields() {
        let schema = json!({"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]},"days":{"type":"integer"},"opt":{"type":"string"}},"required":["city","unit","days"]});
        assert_eq!(
            example_for_schema(&schema),
            json!({"city":"example","unit":"c","days":1})
        );
    }

    #[test]
    fn replies_are_deterministic_with_honest_counts() {
        let mut c = Conversation::new("m");
        c.texts = vec!["be brief".into(), "hello there world".into()];
        c.last = LastTurn::User("hello there world".into());
        let r = reply_to(&c, "openai", &Fault::default(), "call_1".into());
        assert_eq!(r.text(), "Mock openai reply to: hello there world");
        assert_eq!(r.prompt_tokens, 5);
        assert_eq!(r.completion_tokens, r.words.len() as u64);
        assert_eq!(r.pieces().concat(), r.text());
        c.max_tokens = Some(2);
        let r = reply_to(&c, "openai", &Fault::default(), "call_1".into());
        assert_eq!((r.words.len(), r.finish), (2, Finish::Length));
    }
}
