//! The client's chat request as the gateway sees it: validated once, borrowed from the body.
//!
//! Fields the gateway does not touch stay raw JSON (`&RawValue`) and are written back verbatim,
//! so pass-through to OpenAI-kind vendors costs no `serde_json::Value` round trip.

use std::borrow::Cow;
use std::fmt;

use ref_cast::RefCast;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{ErrorKind, GatewayError, GwResult};

/// A JSON value's raw text, as it stands in the text it was read from (what serde_json's
/// `RawValue` holds, made here too by `json_scan`).
#[derive(Debug, RefCast)]
#[repr(transparent)]
pub struct Raw(str);

impl Raw {
    pub fn get(&self) -> &str {
        &self.0
    }
}

/// The raw text of a JSON value, whichever reader found it.
pub trait RawText {
    fn text(&self) -> &str;
}

impl RawText for Raw {
    fn text(&self) -> &str {
        &self.0
    }
}

impl RawText for RawValue {
    fn text(&self) -> &str {
        self.get()
    }
}

impl<T: RawText + ?Sized> RawText for &T {
    fn text(&self) -> &str {
        (**self).text()
    }
}

/// A JSON object kept as its members' raw text, in order.
#[derive(Debug, Default)]
pub struct RawObject<'a> {
    pub members: Vec<(Cow<'a, str>, &'a Raw)>,
    /// The text it was parsed from, when it was parsed by `parse`: members are replaced in
    /// place in it.
    source: &'a [u8],
}

impl<'a> RawObject<'a> {
    /// The object in `bytes`, keeping `bytes` to write it back with members replaced.
    pub fn parse(bytes: &'a [u8]) -> serde_json::Result<RawObject<'a>> {
        // Checked as UTF-8 once, whole: from bytes, serde checks each string and raw value on
        // its own, which cost a passed-through reply ~2,000 instructions more.
        let Ok(text) = std::str::from_utf8(bytes) else {
            return serde_json::from_slice(bytes); // fails, and says where
        };
        // The one-pass scan reads most objects; serde_json what it leaves (and says what is
        // wrong with what is not JSON).
        let mut members = Vec::with_capacity(16);
        let scanned = crate::providers::json_scan::members(text, |key, value| {
            members.push((Cow::Borrowed(key), Raw::ref_cast(value)));
        });
        if scanned.is_some() {
            return Ok(RawObject {
                members,
                source: bytes,
            });
        }
        let mut obj: RawObject<'a> = serde_json::from_str(text)?;
        obj.source = bytes;
        Ok(obj)
    }

    pub fn get(&self, key: &str) -> Option<&'a Raw> {
        self.members
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| *v)
    }

    /// Serializes the object, replacing or adding the given members and dropping `remove`d ones.
    pub fn write_with(&self, replace: &[(&str, &[u8])], remove: &[&str], out: &mut Vec<u8>) {
        if self.write_spliced(replace, remove, out) {
            return;
        }
        out.push(b'{');
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
        };
        for (k, v) in &self.members {
            if remove.contains(&k.as_ref()) {
                continue;
            }
            sep(out);
            write_json_str(k, out);
            out.push(b':');
            match replace.iter().find(|(rk, _)| *rk == k.as_ref()) {
                Some((_, rv)) => out.extend_from_slice(rv),
                None => out.extend_from_slice(v.get().as_bytes()),
            }
        }
        for (rk, rv) in replace {
            if self.get(rk).is_none() {
                sep(out);
                write_json_str(rk, out);
                out.push(b':');
                out.extend_from_slice(rv);
            }
        }
        out.push(b'}');
    }
}

impl RawObject<'_> {
    /// The source with the replaced members' values swapped in, when there is a source, every
    /// replaced member is in it and none is to be removed: a copy or three instead of writing
    /// each member again (the model of every passed-through reply and stream event).
    fn write_spliced(&self, replace: &[(&str, &[u8])], remove: &[&str], out: &mut Vec<u8>) -> bool {
        let base = self.source.as_ptr() as usize;
        let applies = !self.source.is_empty()
            && remove.iter().all(|k| self.get(k).is_none())
            && replace.iter().all(|(k, _)| self.get(k).is_some());
        if !applies {
            return false;
        }
        let start = out.len();
        out.reserve(self.source.len() + replace.iter().map(|(_, v)| v.len()).sum::<usize>());
        let mut copied = 0;
        for (k, v) in &self.members {
            let Some((_, new)) = replace.iter().find(|(rk, _)| *rk == k.as_ref()) else {
                continue;
            };
            // The value's place in the source: it was borrowed from it.
            let at = (v.get().as_ptr() as usize).wrapping_sub(base);
            let end = at + v.get().len();
            if at < copied || end > self.source.len() {
                out.truncate(start);
                return false;
            }
            out.extend_from_slice(&self.source[copied..at]);
            out.extend_from_slice(new);
            copied = end;
        }
        out.extend_from_slice(&self.source[copied..]);
        true
    }
}

/// `s` as a JSON string, as serde_json writes it. Most strings (member names, ids, models)
/// need no escaping and are copied as they are: serde's escaping a byte at a time cost every
/// passed-through stream event some 900 instructions.
pub fn write_json_str(s: &str, out: &mut Vec<u8>) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, s).expect("writing to a Vec cannot fail");
    }
}

/// Whether any byte is a control character, `"` or `\\`: eight bytes at a time (Mycroft's
/// test for a byte below a bound, as serde_json's reader does), a quarter of a byte loop's
/// instructions on the strings of an access line. The last bytes are one more word,
/// overlapping the ones before (or, under eight bytes, two overlapping halves or three
/// bytes): a byte loop over them cost a line's eight strings some 200 instructions.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x;
    let special = |x: u64| {
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        (below(x, 0x20) | below(quote, 1) | below(backslash, 1)) & HIGH != 0
    };
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
    let half = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"));
    let n = bytes.len();
    match n {
        0 => false,
        // Three bytes cover one to three; the other five are spaces.
        1..=3 => special(u64::from_le_bytes([
            bytes[0],
            bytes[n / 2],
            bytes[n - 1],
            b' ',
            b' ',
            b' ',
            b' ',
            b' ',
        ])),
        4..=7 => special(u64::from(half(0)) | u64::from(half(n - 4)) << 32),
        _ => (0..n - 8).step_by(8).any(|at| special(word(at))) || special(word(n - 8)),
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<CowStr<'de>, &'de RawValue>()? {
                    members.push((k.0, Raw::ref_cast(v.get())));
                }
                Ok(RawObject {
                    members,
                    source: &[],
                })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A JSON string borrowed from the input when it holds no escapes. serde's own `Cow<str>`
/// always copies into a `String`: an allocation for every member name of every body.
pub struct CowStr<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// What JSON type a raw value holds, read from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    pub fn of(v: &(impl RawText + ?Sized)) -> JsonType {
        match v.text().as_bytes().first() {
            Some(b'n') => JsonType::Null,
            Some(b't' | b'f') => JsonType::Bool,
            Some(b'"') => JsonType::String,
            Some(b'[') => JsonType::Array,
            Some(b'{') => JsonType::Object,
            _ => JsonType::Number,
        }
    }

    fn name(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Bool => "a boolean",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Array => "an array",
            JsonType::Object => "an object",
        }
    }
}

/// A validated `/v1/chat/completions` body.
#[derive(Debug)]
pub struct ChatRequest<'a> {
    pub body: RawObject<'a>,
    pub model: Cow<'a, str>,
    pub stream: bool,
    pub include_usage: bool,
}

/// The members whose type the gateway checks before any vendor sees the request, with the
/// types OpenAI accepts for them (null always allowed for optional ones).
const TYPED_MEMBERS: &[(&str, &[JsonType])] = &[
    ("temperature", &[JsonType::Number]),
    ("top_p", &[JsonType::Number]),
    ("presence_penalty", &[JsonType::Number]),
    ("frequency_penalty", &[JsonType::Number]),
    ("max_tokens", &[JsonType::Number]),
    ("max_completion_tokens", &[JsonType::Number]),
    ("n", &[JsonType::Number]),
    ("seed", &[JsonType::Number]),
    ("stream", &[JsonType::Bool]),
    ("stream_options", &[JsonType::Object]),
    ("stop", &[JsonType::String, JsonType::Array]),
    ("tools", &[JsonType::Array]),
    ("tool_choice", &[JsonType::String, JsonType::Object]),
    ("response_format", &[JsonType::Object]),
    ("user", &[JsonType::String]),
    ("logit_bias", &[JsonType::Object]),
    ("parallel_tool_calls", &[JsonType::Bool]),
];

const INTEGER_MEMBERS: &[&str] = &["max_tokens", "max_completion_tokens", "n", "seed"];

#[derive(Deserialize)]
struct MessageShape<'a> {
    #[serde(borrow)]
    role: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

pub fn invalid_json(e: serde_json::Error) -> GatewayError {
    GatewayError::new(
        ErrorKind::InvalidJson,
        format!("We could not parse the JSON body of your request: {e}"),
    )
}

impl<'a> ChatRequest<'a> {
    /// The completion length the client allows, under either of OpenAI's names.
    pub fn max_tokens(&self) -> Option<u64> {
        ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|m| self.body.get(m).and_then(|v| v.get().parse::<u64>().ok()))
    }

    /// How many choices the client asks for (`n`, 1 when absent).
    pub fn choices(&self) -> u64 {
        self.body
            .get("n")
            .and_then(|v| v.get().parse::<u64>().ok())
            .unwrap_or(1)
    }

    pub fn parse(bytes: &'a [u8]) -> GwResult<ChatRequest<'a>> {
        Self::parse_with(bytes, &[], |body| {
            check_messages(body)?;
            check_count(body, "n", MAX_CHOICES)
        })
    }

    /// A legacy `/v1/completions` body: a `prompt` (one string, or a list of one) instead of
    /// `messages`; the prompt is returned beside the request.
    pub fn parse_legacy(bytes: &'a [u8]) -> GwResult<(ChatRequest<'a>, String)> {
        let mut prompt = None;
        let chat = Self::parse_with(bytes, &[], |body| {
            prompt = Some(legacy_prompt(body)?);
            check_count(body, "n", MAX_CHOICES)
        })?;
        Ok((chat, prompt.unwrap_or_default()))
    }

    /// An embeddings body: `input` instead of `messages`.
    pub fn parse_embeddings(bytes: &'a [u8]) -> GwResult<ChatRequest<'a>> {
        Self::parse_with(bytes, &[], |body| {
            match body.get("input").map(JsonType::of) {
                Some(JsonType::String | JsonType::Array) => check_inputs(body),
                Some(_) => Err(GatewayError::invalid(
                    "'input' must be a string or an array.",
                    Some("input"),
                )),
                None => Err(GatewayError::invalid(
                    "Missing required parameter: 'input'.",
                    Some("input"),
                )),
            }
        })
    }

    /// An image generation body: `prompt` must be a string; the rest is checked when the
    /// request is typed for a vendor that does not take it as it is.
    pub fn parse_images(bytes: &'a [u8]) -> GwResult<ChatRequest<'a>> {
        Self::parse_with(bytes, &["response_format"], |body| {
            match body.get("prompt").map(JsonType::of) {
                Some(JsonType::String) => check_count(body, "n", MAX_IMAGES),
                Some(_) => Err(GatewayError::invalid(
                    "'prompt' must be a string.",
                    Some("prompt"),
                )),
                None => Err(GatewayError::invalid(
                    "Missing required parameter: 'prompt'.",
                    Some("prompt"),
                )),
            }
        })
    }

    /// `own_members`: members this endpoint types differently from chat (images'
    /// `response_format` is a string), left to the endpoint's own check.
    /// A side-by-side compare body: `models` (distinct names, at most `max`) and a chat body
    /// without `model`. Returns the names and, for each, the chat body it takes (streams ask
    /// for usage); the chat body is checked as a chat request is.
    pub fn parse_compare(bytes: &[u8], max: usize) -> GwResult<(Vec<String>, bool, Vec<Vec<u8>>)> {
        let body = RawObject::parse(bytes).map_err(|e| {
            if e.is_data() {
                GatewayError::invalid("The request body must be a JSON object.", None)
            } else {
                invalid_json(e)
            }
        })?;
        let bad_models = || {
            GatewayError::invalid(
                format!("'models' must be a list of 1 to {max} distinct model names."),
                Some("models"),
            )
        };
        let models: Vec<String> = body
            .get("models")
            .and_then(|v| serde_json::from_str(v.get()).ok())
            .ok_or_else(bad_models)?;
        let distinct: std::collections::HashSet<&String> = models.iter().collect();
        if models.is_empty() || models.len() > max || distinct.len() != models.len() {
            return Err(bad_models());
        }
        let stream = body.get("stream").is_some_and(|v| v.get() == "true");
        let usage_on: &[u8] = br#"{"include_usage":true}"#;
        let bodies: Vec<Vec<u8>> = models
            .iter()
            .map(|m| {
                let mut name = Vec::with_capacity(m.len() + 2);
                write_json_str(m, &mut name);
                let mut out = Vec::with_capacity(bytes.len() + 32);
                let mut replace = vec![("model", name.as_slice())];
                if stream {
                    replace.push(("stream_options", usage_on));
                }
                body.write_with(&replace, &["models"], &mut out);
                out
            })
            .collect();
        ChatRequest::parse(&bodies[0])?;
        Ok((models, stream, bodies))
    }

    fn parse_with(
        bytes: &'a [u8],
        own_members: &[&str],
        mut check_input: impl FnMut(&RawObject) -> GwResult<()>,
    ) -> GwResult<ChatRequest<'a>> {
        let body = match RawObject::parse(bytes) {
            Ok(b) => b,
            Err(e) if e.is_data() => {
                return Err(GatewayError::invalid(
                    "The request body must be a JSON object.",
                    None,
                ))
            }
            Err(e) => return Err(invalid_json(e)),
        };
        check_unique_members(&body)?;
        let model = model(&body)?;
        check_input(&body)?;
        check_types(&body, own_members)?;
        let stream = body.get("stream").is_some_and(|v| v.get() == "true");
        let include_usage = include_usage(&body)?;
        Ok(ChatRequest {
            body,
            model,
            stream,
            include_usage,
        })
    }
}

/// The most choices (`n`) a chat or completion may ask for, as OpenAI allows: each is a
/// whole completion the vendor writes and the gateway relays.
pub const MAX_CHOICES: u64 = 128;
/// The most images one request may ask for, as OpenAI allows.
pub const MAX_IMAGES: u64 = 10;
/// The most inputs one embeddings request may carry, as OpenAI allows: a vendor with small
/// batches turns each batch into a call.
pub const MAX_INPUTS: usize = 2048;
/// The most text one embeddings request may carry, in tokens as the gateway estimates them
/// (4 bytes each), as OpenAI's own limit of 300,000 tokens per request.
pub const MAX_INPUT_TOKENS: usize = 300_000;

/// An integer member, when given, between 1 and `max`.
fn check_count(body: &RawObject, name: &str, max: u64) -> GwResult<()> {
    let Some(v) = body.get(name) else {
        return Ok(());
    };
    match v.get().parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(()),
        _ if JsonType::of(v) == JsonType::Null => Ok(()),
        _ => Err(GatewayError::invalid(
            format!("'{name}' must be an integer between 1 and {max}."),
            Some(name),
        )),
    }
}

/// An embeddings `input` (a string or a list): at most [`MAX_INPUTS`] entries and
/// [`MAX_INPUT_TOKENS`].
fn check_inputs(body: &RawObject) -> GwResult<()> {
    let Some(input) = body.get("input") else {
        return Ok(());
    };
    if input.get().len() / 4 > MAX_INPUT_TOKENS {
        return Err(GatewayError::invalid(
            format!(
                "'input' may hold at most {MAX_INPUT_TOKENS} tokens in all; split the request."
            ),
            Some("input"),
        ));
    }
    if JsonType::of(input) != JsonType::Array {
        return Ok(());
    }
    let items: Vec<&RawValue> = serde_json::from_str(input.get()).map_err(invalid_json)?;
    if items.is_empty() {
        return Err(GatewayError::invalid(
            "'input' must not be empty.",
            Some("input"),
        ));
    }
    // A list of numbers is one input of token IDs.
    let count = if items.iter().all(|i| JsonType::of(i) == JsonType::Number) {
        1
    } else {
        items.len()
    };
    if count > MAX_INPUTS {
        return Err(GatewayError::invalid(
            format!("'input' may hold at most {MAX_INPUTS} entries; {count} were given."),
            Some("input"),
        ));
    }
    Ok(())
}

/// A member given twice would be validated once and forwarded twice, and vendors disagree on
/// which one counts.
fn check_unique_members(body: &RawObject) -> GwResult<()> {
    let twice = |k: &str| {
        GatewayError::invalid(
            format!("The member '{k}' is given more than once."),
            Some(k),
        )
    };
    let members = &body.members;
    // A request has a handful of members: comparing them pairwise allocates nothing. A body
    // with very many is checked with a set, which stays linear.
    if members.len() <= 24 {
        for (i, (k, _)) in members.iter().enumerate() {
            if members[..i].iter().any(|(seen, _)| seen == k) {
                return Err(twice(k));
            }
        }
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(members.len());
    for (k, _) in members {
        if !seen.insert(k.as_ref()) {
            return Err(twice(k));
        }
    }
    Ok(())
}

fn model<'a>(body: &RawObject<'a>) -> GwResult<Cow<'a, str>> {
    let v = body.get("model").ok_or_else(|| {
        GatewayError::invalid("you must provide a model parameter", Some("model"))
    })?;
    match serde_json::from_str::<CowStr<'a>>(v.get()) {
        Ok(CowStr(m)) if !m.is_empty() => Ok(m),
        _ => Err(type_error("model", "a non-empty string", v)),
    }
}

/// `messages`: a non-empty array of objects, each with a known role.
fn check_messages(body: &RawObject) -> GwResult<()> {
    let messages = body.get("messages").ok_or_else(|| {
        GatewayError::invalid("Missing required parameter: 'messages'.", Some("messages"))
    })?;
    // The scan splits most lists; serde_json the rest (and what is not a list).
    let mut list: Vec<&str> = Vec::new();
    if crate::providers::json_scan::elements(messages.get(), |m| list.push(m)).is_none() {
        list = serde_json::from_str::<Vec<&RawValue>>(messages.get())
            .map_err(|_| type_error("messages", "an array", messages))?
            .into_iter()
            .map(RawValue::get)
            .collect();
    }
    if list.is_empty() {
        return Err(GatewayError::invalid(
            "'messages' must contain at least one message.",
            Some("messages"),
        ));
    }
    for (i, m) in list.iter().enumerate() {
        // Named only when there is an error to report: most requests have none.
        let param = || format!("messages[{i}]");
        let m = Raw::ref_cast(m);
        if JsonType::of(m) != JsonType::Object {
            return Err(type_error(&param(), "an object", m));
        }
        let role = role_of(m)?;
        match role.as_deref() {
            Some("system" | "developer" | "user" | "assistant" | "tool" | "function") => {}
            Some(other) => {
                let param = param();
                return Err(GatewayError::invalid(
                    format!("Invalid value for '{param}.role': '{other}' is not one of 'system', 'developer', 'user', 'assistant', 'tool'."),
                    Some(&format!("{param}.role")),
                ));
            }
            None => {
                let param = param();
                return Err(GatewayError::invalid(
                    format!("Missing required parameter: '{param}.role'."),
                    Some(&format!("{param}.role")),
                ));
            }
        }
    }
    Ok(())
}

/// A message's `role`, when it is a string. The scan reads most messages; serde_json those
/// it leaves, and those naming `role` twice (which it refuses, as it always has).
fn role_of(message: &Raw) -> GwResult<Option<Cow<'_, str>>> {
    let role = match crate::providers::json_scan::named(message.get(), ["role"]) {
        Some([role]) => role,
        None => {
            let shape: MessageShape = serde_json::from_str(message.get()).map_err(invalid_json)?;
            shape.role.map(RawValue::get)
        }
    };
    fn plain(r: &str) -> Option<&str> {
        r.strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .filter(|r| !r.contains('\\'))
    }
    Ok(role.and_then(|r| match plain(r) {
        Some(text) => Some(Cow::Borrowed(text)),
        None => serde_json::from_str::<CowStr>(r).ok().map(|r| r.0),
    }))
}

fn legacy_prompt(body: &RawObject) -> GwResult<String> {
    let v = body.get("prompt").ok_or_else(|| {
        GatewayError::invalid("Missing required parameter: 'prompt'.", Some("prompt"))
    })?;
    match serde_json::from_str::<serde_json::Value>(v.get()) {
        Ok(serde_json::Value::String(p)) => Ok(p),
        Ok(serde_json::Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            Ok(a[0].as_str().unwrap_or_default().to_string())
        }
        Ok(serde_json::Value::Array(_)) => Err(GatewayError::invalid(
            "This gateway takes one prompt per request.",
            Some("prompt"),
        )),
        _ => Err(type_error("prompt", "a string", v)),
    }
}

/// The members OpenAI types strictly, checked before any vendor sees them.
fn check_types(body: &RawObject, own_members: &[&str]) -> GwResult<()> {
    for (name, allowed) in TYPED_MEMBERS {
        if own_members.contains(name) {
            continue;
        }
        let Some(v) = body.get(name) else { continue };
        let t = JsonType::of(v);
        if t == JsonType::Null {
            continue;
        }
        if !allowed.contains(&t) {
            let expected: Vec<&str> = allowed.iter().map(|a| a.name()).collect();
            return Err(type_error(name, &expected.join(" or "), v));
        }
        if INTEGER_MEMBERS.contains(name) && v.get().parse::<i64>().is_err() {
            return Err(type_error(name, "an integer", v));
        }
    }
    Ok(())
}

fn include_usage(body: &RawObject) -> GwResult<bool> {
    match body.get("stream_options") {
        Some(v) if JsonType::of(v) == JsonType::Object => {
            let options = serde_json::from_str::<StreamOptions>(v.get()).map_err(|_| {
                GatewayError::invalid(
                    "'stream_options.include_usage' must be a boolean.",
                    Some("stream_options.include_usage"),
                )
            })?;
            Ok(options.include_usage.unwrap_or(false))
        }
        _ => Ok(false),
    }
}

fn type_error(param: &str, expected: &str, got: &(impl RawText + ?Sized)) -> GatewayError {
    let got_type = JsonType::of(got).name();
    GatewayError::invalid(
        format!("Invalid type for '{param}': expected {expected}, but got {got_type}."),
        Some(param),
    )
    .with_code("invalid_type")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> GwResult<ChatRequest<'_>> {
        ChatRequest::parse(s.as_bytes())
    }

    #[test]
    fn parses_a_minimal_request() {
        let r = parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert_eq!(r.model, "m");
        assert!(r.stream && r.include_usage);
    }

    #[test]
    fn names_and_values_with_escapes_are_read_like_plain_ones() {
        // Plain names are borrowed from the body; escaped ones are decoded into a copy.
        let r = parse(
            r#"{"mo\u0064el":"m\u00e9","messages":[{"r\u006fle":"\u0075ser","content":"hi"}]}"#,
        )
        .unwrap();
        assert_eq!(r.model, "mé");
        assert!(matches!(r.body.members[0].0, Cow::Owned(_)));
        let r = parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert!(
            matches!(r.body.members[0].0, Cow::Borrowed(_)) && matches!(r.model, Cow::Borrowed(_))
        );
    }

    #[test]
    fn rewrites_the_model_and_keeps_the_rest_verbatim() {
        let src = r#"{"model":"public","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"temperature":0.5,"x_extra":{"a":[1,2]}}"#;
        let r = parse(src).unwrap();
        let mut out = Vec::new();
        r.body
            .write_with(&[("model", b"\"vendor-m\"")], &[], &mut out);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            r#"{"model":"vendor-m","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"temperature":0.5,"x_extra":{"a":[1,2]}}"#
        );
    }

    #[test]
    fn a_parsed_object_is_written_back_with_its_members_replaced_in_place() {
        let src = br#" { "id" : "x", "model" : "v", "n": {"model": 1}, "model":"w" } "#;
        let obj = RawObject::parse(src).unwrap();
        let mut out = Vec::new();
        obj.write_with(&[("model", b"\"p\"")], &[], &mut out);
        let want = r#" { "id" : "x", "model" : "p", "n": {"model": 1}, "model":"p" } "#;
        assert_eq!(String::from_utf8(out).unwrap(), want);
        // A member to add or remove: written afresh.
        let mut out = Vec::new();
        obj.write_with(&[("usage", b"{}")], &["n"], &mut out);
        let want = r#"{"id":"x","model":"v","model":"w","usage":{}}"#;
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn a_role_is_read_as_serde_json_reads_it() {
        let role = |m: &str| role_of(Raw::ref_cast(m)).map(|r| r.map(|r| r.into_owned()));
        assert_eq!(
            role(r#"{"content":"x","role":"user"}"#).unwrap().as_deref(),
            Some("user")
        );
        assert_eq!(
            role(r#"{"role":"us\u0065r"}"#).unwrap().as_deref(),
            Some("user")
        );
        assert_eq!(
            role(r#"{"r\u006fle":"tool"}"#).unwrap().as_deref(),
            Some("tool")
        );
        assert_eq!(role(r#"{"role":5}"#).unwrap(), None);
        assert_eq!(role(r#"{}"#).unwrap(), None);
        assert!(
            role(r#"{"role":"user","role":"tool"}"#).is_err(),
            "named twice"
        );
    }

    #[test]
    fn strings_are_escaped_when_and_only_when_they_need_it() {
        for s in [
            "",
            "plain",
            "exactly8",
            "a longer plain string, é and ü",
            "\u{7f}\u{80}",
        ] {
            assert!(!needs_escape(s.as_bytes()), "{s:?}");
        }
        for len in 1..=20 {
            assert!(!needs_escape(&vec![b'x'; len]), "{len} plain bytes");
            for at in 0..len {
                for bad in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
                    let mut s = vec![b'x'; len];
                    s[at] = bad;
                    assert!(needs_escape(&s), "{bad} at {at} of {len}");
                }
            }
        }
        let mut out = Vec::new();
        write_json_str("tab\there \"q\" é", &mut out);
        assert_eq!(out, serde_json::to_vec("tab\there \"q\" é").unwrap());
    }

    #[test]
    fn rejects_bad_input_with_the_parameter_named() {
        let cases = [
            ("{", None, ErrorKind::InvalidJson),
            ("[1,2]", None, ErrorKind::InvalidRequest),
            (
                r#"{"messages":[]}"#,
                Some("model"),
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"model":5,"messages":[]}"#,
                Some("model"),
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"model":"m"}"#,
                Some("messages"),
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"model":"m","messages":"hi"}"#,
                Some("messages"),
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"model":"m","messages":[]}"#,
                Some("messages"),
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"model":"m","messages":[1]}"#,
                Some("messages[0]"),
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"model":"m","messages":[{"content":"x"}]}"#,
                Some("messages[0].role"),
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"model":"m","messages":[{"role":"robot"}]}"#,
                Some("messages[0].role"),
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"temperature":"hot"}"#,
                Some("temperature"),
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":1.5}"#,
                Some("max_tokens"),
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#,
                Some("stream"),
                ErrorKind::InvalidRequest,
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"stream_options":{"include_usage":1}}"#,
                Some("stream_options.include_usage"),
                ErrorKind::InvalidRequest,
            ),
        ];
        for (body, param, kind) in cases {
            let e = parse(body).unwrap_err();
            assert_eq!(e.kind, kind, "{body}");
            assert_eq!(e.param.as_deref(), param, "{body}: {}", e.message);
        }
    }

    #[test]
    fn a_member_given_twice_is_refused() {
        let e = parse(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0.1,"temperature":"hot"}"#)
            .unwrap_err();
        assert_eq!((e.status(), e.param.as_deref()), (400, Some("temperature")));
    }

    #[test]
    fn broken_utf8_is_a_json_error_not_a_panic() {
        let mut body = br#"{"model":"m","messages":[{"role":"user","content":""#.to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(br#""}]}"#);
        let e = ChatRequest::parse(&body).unwrap_err();
        assert_eq!(e.status(), 400);
    }
}
