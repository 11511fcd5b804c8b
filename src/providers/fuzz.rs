//! Arbitrary and extreme input into every vendor and client decoder: answers or
//! OpenAI-shaped errors, never a panic.

use super::testing::{fuzz_stream, provider, qianfan_v1};
use super::*;

#[test]
fn stream_decoders_survive_arbitrary_bytes() {
    fuzz_stream(openai::ChunkDecoder::new);
    fuzz_stream(anthropic::AnthropicStream::new);
    fuzz_stream(dashscope::DashScopeStream::new);
    fuzz_stream(qianfan::QianfanStream::new);
    fuzz_stream(gemini::GeminiStream::new);
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..2000 {
        let bytes: Vec<u8> = (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect();
        let mut pass = openai::OpenAiStream::new("m", true);
        let mut out = Vec::new();
        pass.push(&bytes, &mut out);
        pass.finish(&mut out);
    }
}

#[test]
fn response_decoders_survive_arbitrary_bytes() {
    let mut rng = fastrand::Rng::with_seed(11);
    let samples: [&[u8]; 6] = [
        br#"{"choices":[{"message":{"content":"x"}}]}"#,
        br#"{"content":[{"type":"text","text":"x"}],"stop_reason":"end_turn"}"#,
        br#"{"output":{"choices":[{"message":{"content":"x"},"finish_reason":"stop"}]}}"#,
        br#"{"result":"x","is_end":true,"error_code":110}"#,
        br#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}]}"#,
        br#"{"error":{"code":429,"message":"m","details":[{"retryDelay":"1s"}]}}"#,
    ];
    for _ in 0..3000 {
        let base = samples[rng.usize(0..samples.len())];
        let mut bytes = base.to_vec();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(0..=bytes.len());
            match rng.u8(0..3) {
                0 => bytes.insert(at, rng.u8(..)),
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        let _ = openai::decode(&bytes);
        let _ = openai::decode_raw("m", &bytes);
        let _ = anthropic::decode(&bytes);
        let _ = dashscope::decode(&bytes);
        let _ = qianfan::decode(&bytes);
        let _ = gemini::decode(&bytes);
        for status in [400, 401, 429, 500, 503] {
            let _ = openai::map_error(status, &bytes);
            let _ = anthropic::map_error(status, &bytes);
            let _ = dashscope::map_error(status, &bytes);
            let _ = qianfan::map_error(status, &bytes);
            let _ = gemini::map_error(status, &bytes);
        }
    }
}

// --- properties over extreme values -----------------------------------------------------------

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::config::{RetryPolicy, Vendor};
use crate::traffic::failover;

fn vendors() -> impl Strategy<Value = Vendor> {
    prop_oneof![
        Just(Vendor::OpenAi),
        Just(Vendor::Anthropic),
        Just(Vendor::DashScope),
        Just(qianfan_v1()),
        Just(Vendor::Gemini),
    ]
}

/// Numbers a vendor or a client might send to break arithmetic: huge, negative, fractional.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(0.5)),
        any::<u32>().prop_map(|n| json!(n)),
    ]
}

/// JSON in the vendors' and clients' vocabulary, with extreme numbers anywhere.
fn json_value() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "error",
        "code",
        "message",
        "type",
        "status",
        "details",
        "retryDelay",
        "usage",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "input_tokens",
        "output_tokens",
        "choices",
        "content",
        "text",
        "candidates",
        "usageMetadata",
        "promptTokenCount",
        "candidatesTokenCount",
        "output",
        "result",
        "error_code",
        "expires_in",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "seed",
        "stop",
        "messages",
        "role",
        "model",
        "tools",
        "tool_choice",
        "stream",
        "stream_options",
        "function",
        "arguments",
        "id",
        "name",
    ]);
    let leaf = prop_oneof![
        number(),
        Just(json!(null)),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![
            "1e30s",
            "18446744073709551615",
            "user",
            "assistant",
            "stop",
            "x"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn retry_after() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        Just(Some(u64::MAX)),
        any::<u64>().prop_map(Some)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever a vendor answers, the client gets an OpenAI-shaped error or a reply, and the
    /// retry loop can wait for what it asks without overflowing.
    #[test]
    fn vendor_answers_never_panic(
        vendor in vendors(),
        status in 0u16..1000,
        retry in retry_after(),
        body in json_value(),
    ) {
        let p = provider(vendor);
        let bytes = serde_json::to_vec(&body).unwrap();
        let e = map_error(&p, status, retry, &bytes);
        prop_assert!((400..600).contains(&e.status()), "status {}", e.status());
        let shaped: Value = serde_json::from_slice(&e.body()).unwrap();
        prop_assert!(shaped["error"]["message"].is_string());
        let policy = RetryPolicy {
            attempts: 3,
            deadline: Duration::from_secs(60),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        };
        let wait = failover::backoff(&policy, 1, Some(&e), false);
        prop_assert!(Instant::now().checked_add(wait).is_some());
        if let Ok(c) = decode_chat(&p, &bytes) {
            if let Some(u) = c.usage {
                prop_assert!(u.total_tokens >= u.prompt_tokens.min(u.completion_tokens));
            }
        }
        let mut d = stream_decoder(&p);
        let event = format!("data: {body}\n\n");
        d.push(event.as_bytes(), &mut |_| {});
        d.finish(&mut |_| {});
        let _ = qianfan::read_token_reply(status, &bytes);
    }

    /// Whatever a client sends, it is typed and encoded for every vendor, or refused with a 400.
    #[test]
    fn client_bodies_are_served_or_refused(body in json_value(), vendor in vendors()) {
        let mut request = match body {
            Value::Object(mut o) => {
                o.entry("model").or_insert(json!("m"));
                o.entry("messages").or_insert(json!([{"role": "user", "content": "hi"}]));
                Value::Object(o)
            }
            other => other,
        };
        let bytes = serde_json::to_vec(&request).unwrap();
        match ChatRequest::parse(&bytes) {
            Err(e) => prop_assert_eq!(e.status(), 400),
            Ok(chat) => {
                let p = provider(vendor);
                let target = VendorTarget { provider: &p, vendor_model: "m", access_token: Some("t") };
                if let Err(e) = encode_chat(&mut ClientRequest::openai(&chat), &target) {
                    prop_assert_eq!(e.status(), 400, "{}", e);
                }
                let _ = chat.max_tokens();
            }
        }
        if let Value::Object(o) = &mut request {
            o.insert("max_tokens".into(), json!(u64::MAX));
        }
        let bytes = serde_json::to_vec(&request).unwrap();
        if let Err(e) = crate::api::anthropic::parse_request(&bytes) {
            prop_assert_eq!(e.status(), 400);
        }
    }
}
