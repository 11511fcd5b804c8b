//! Micro-benchmarks of every vendor's pure translation functions: request encode, response
//! decode, and the stream decoder per event. `cargo bench --bench translate`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

use modelmux::config::{Endpoint, Provider, Secret, Timeouts, Vendor};
use modelmux::providers::model::Request;
use modelmux::providers::openai::wire::ChatRequest;
use modelmux::providers::{
    self, anthropic, dashscope, gemini, openai, qianfan, VendorStream, VendorTarget,
};

const REQUEST: &[u8] = br#"{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the weather like in Oslo today, and should I bring an umbrella?"}],"temperature":0.7,"max_tokens":256,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]}"#;

fn endpoint() -> Endpoint {
    Endpoint::parse("https://vendor.example").expect("a URL")
}

fn provider(vendor: Vendor) -> Provider {
    Provider {
        name: "bench".into(),
        vendor,
        endpoint: endpoint(),
        api_key: Some(Secret::new("sk-bench")),
        default_max_tokens: 4096,
        max_in_flight: 4096,
        jwt: None,
        timeouts: Timeouts::default(),
        ca: None,
        result_hosts: Default::default(),
        credentials_from: Vec::new(),
        responses_api: false,
    }
}

fn repeat_events(first: &str, middle: &str, last: &str, n: usize) -> (Vec<u8>, u64) {
    let mut s = String::from(first);
    for _ in 0..n {
        s.push_str(middle);
    }
    s.push_str(last);
    (s.into_bytes(), n as u64 + 2)
}

type MakeDecoder = Box<dyn Fn() -> Box<dyn VendorStream>>;
type DecodeFn = fn(&[u8]) -> modelmux::error::GwResult<providers::model::Completion>;

fn streams() -> Vec<(&'static str, Vec<u8>, u64, MakeDecoder)> {
    let openai = repeat_events(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" word\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
        50,
    );
    let anthropic = repeat_events(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" word\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":50}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        50,
    );
    let dashscope = repeat_events(
        "",
        "id:1\nevent:result\n:HTTP_STATUS/200\ndata:{\"output\":{\"choices\":[{\"message\":{\"content\":\" word\",\"role\":\"assistant\"},\"finish_reason\":\"null\"}]},\"usage\":{\"total_tokens\":12,\"output_tokens\":2,\"input_tokens\":10},\"request_id\":\"r1\"}\n\n",
        "id:2\nevent:result\n:HTTP_STATUS/200\ndata:{\"output\":{\"choices\":[{\"message\":{\"content\":\"\",\"role\":\"assistant\"},\"finish_reason\":\"stop\"}]},\"usage\":{\"total_tokens\":60,\"output_tokens\":50,\"input_tokens\":10},\"request_id\":\"r1\"}\n\n",
        50,
    );
    let qianfan = repeat_events(
        "",
        "data: {\"id\":\"as-1\",\"object\":\"chat.completion\",\"created\":1,\"sentence_id\":0,\"is_end\":false,\"result\":\" word\",\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1,\"total_tokens\":8}}\n\n",
        "data: {\"id\":\"as-1\",\"object\":\"chat.completion\",\"created\":1,\"sentence_id\":51,\"is_end\":true,\"result\":\"\",\"finish_reason\":\"normal\",\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":50,\"total_tokens\":57}}\n\n",
        50,
    );
    let gemini = repeat_events(
        "",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\" word\"}]},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":4,\"totalTokenCount\":4}}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"\"}]},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":50,\"totalTokenCount\":54}}\r\n\r\n",
        50,
    );
    vec![
        (
            "openai",
            openai.0,
            openai.1,
            Box::new(|| Box::new(openai::ChunkDecoder::new()) as Box<dyn VendorStream>),
        ),
        (
            "anthropic",
            anthropic.0,
            anthropic.1,
            Box::new(|| Box::new(anthropic::AnthropicStream::new()) as Box<dyn VendorStream>),
        ),
        (
            "dashscope",
            dashscope.0,
            dashscope.1,
            Box::new(|| Box::new(dashscope::DashScopeStream::new()) as Box<dyn VendorStream>),
        ),
        (
            "qianfan",
            qianfan.0,
            qianfan.1,
            Box::new(|| Box::new(qianfan::QianfanStream::new()) as Box<dyn VendorStream>),
        ),
        (
            "gemini",
            gemini.0,
            gemini.1,
            Box::new(|| Box::new(gemini::GeminiStream::new()) as Box<dyn VendorStream>),
        ),
    ]
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let pass = provider(Vendor::OpenAi);
    g.bench_function("openai pass-through (parse + rewrite)", |b| {
        b.iter(|| {
            let chat = ChatRequest::parse(black_box(REQUEST)).unwrap();
            let target = VendorTarget {
                provider: &pass,
                vendor_model: "gpt-4o-mini",
                access_token: None,
            };
            black_box(openai::encode_raw(&chat, &target, "/chat/completions"))
        })
    });
    let qianfan_v1 = Vendor::QianfanV1 {
        client_id: Secret::new("ak"),
        client_secret: Secret::new("sk"),
        token_endpoint: endpoint(),
    };
    for vendor in [
        Vendor::Anthropic,
        Vendor::DashScope,
        qianfan_v1,
        Vendor::Gemini,
    ] {
        let name = vendor.kind();
        let p = provider(vendor);
        g.bench_function(format!("{name} (parse + type + encode)"), |b| {
            b.iter(|| {
                let chat = ChatRequest::parse(black_box(REQUEST)).unwrap();
                let mut req = providers::ClientRequest::openai(&chat);
                let target = VendorTarget {
                    provider: &p,
                    vendor_model: "model",
                    access_token: Some("tok"),
                };
                black_box(providers::encode_chat(&mut req, &target).unwrap())
            })
        });
    }
    g.bench_function("type the request (Request::from_openai)", |b| {
        let chat = ChatRequest::parse(REQUEST).unwrap();
        b.iter(|| black_box(Request::from_openai(black_box(&chat)).unwrap()))
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    let openai_body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}"#;
    g.bench_function("openai pass-through (model rewrite)", |b| {
        b.iter(|| black_box(openai::decode_raw("pub", black_box(openai_body)).unwrap()))
    });
    let cases: [(&str, &[u8], DecodeFn); 5] = [
        ("openai typed", openai_body, openai::decode),
        ("anthropic", br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Hello! How can I help you today?"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":9}}"#, anthropic::decode),
        ("dashscope", br#"{"output":{"choices":[{"finish_reason":"stop","message":{"role":"assistant","content":"Hello! How can I help you today?"}}]},"usage":{"input_tokens":10,"output_tokens":9,"total_tokens":19},"request_id":"b1a2"}"#, dashscope::decode),
        ("qianfan", br#"{"id":"as-1","object":"chat.completion","created":1,"result":"Hello! How can I help you today?","is_truncated":false,"need_clear_history":false,"finish_reason":"normal","usage":{"prompt_tokens":7,"completion_tokens":9,"total_tokens":16}}"#, qianfan::decode),
        ("gemini", br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hello! How can I help you today?"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":9,"totalTokenCount":13},"modelVersion":"gemini-2.5-flash"}"#, gemini::decode),
    ];
    for (name, body, f) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                let c = f(black_box(body)).unwrap();
                black_box(modelmux::api::openai::writer::completion_json(&c, "pub"))
            })
        });
    }
    g.finish();
}

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream decode + OpenAI chunk write, per event");
    for (name, bytes, events, make) in streams() {
        g.throughput(Throughput::Elements(events));
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    (
                        make(),
                        modelmux::api::openai::writer::OpenAiWriter::new("pub", true),
                    )
                },
                |(mut d, mut w)| {
                    let mut out = Vec::with_capacity(16 * 1024);
                    d.push(black_box(&bytes), &mut |delta| {
                        w.write(delta, &mut out);
                    });
                    d.finish(&mut |delta| {
                        w.write(delta, &mut out);
                    });
                    black_box(out)
                },
                BatchSize::SmallInput,
            )
        });
    }
    let (openai_bytes, events) = {
        let s = &streams()[0];
        (s.1.clone(), s.2)
    };
    g.throughput(Throughput::Elements(events));
    g.bench_function("openai pass-through", |b| {
        b.iter(|| {
            let mut p = openai::OpenAiStream::new("pub", true);
            let mut out = Vec::with_capacity(16 * 1024);
            p.push(black_box(&openai_bytes), &mut out);
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, encode, decode, stream);
criterion_main!(benches);
