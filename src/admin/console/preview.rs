//! What each vendor would receive for a chat body: the vendor encoders run without sending, and
//! every credential in the result masked.

use serde_json::{json, Value};

use crate::config::Config;
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::providers::openai::ChatRequest;
use crate::providers::{self, ClientRequest, VendorTarget};
use crate::traffic::redact;

const MASKED: &str = "***";

pub(crate) fn preview(config: &Config, body: &[u8]) -> GwResult<Value> {
    let chat = ChatRequest::parse(body)?;
    let model = config.model(&chat.model).ok_or_else(|| {
        GatewayError::new(
            ErrorKind::UnknownModel,
            format!("The model `{}` does not exist.", chat.model),
        )
    })?;
    let mut targets = Vec::with_capacity(model.targets.len());
    for t in &model.targets {
        let provider = &t.provider;
        let target = VendorTarget {
            provider,
            vendor_model: &t.model,
            access_token: Some(MASKED),
        };
        let mut request = ClientRequest::openai(&chat);
        if model.redact_pii {
            request.rewrite_text(redact::redact)?;
        }
        let entry = match providers::encode_chat(&mut request, &target) {
            Ok(r) => {
                let headers: serde_json::Map<String, Value> = r
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let secret = matches!(*k, "authorization" | "x-api-key" | "x-goog-api-key");
                        (
                            k.to_string(),
                            json!(if secret { MASKED } else { v.as_str() }),
                        )
                    })
                    .collect();
                let e = &provider.endpoint;
                let scheme = if e.tls { "https" } else { "http" };
                let url = format!("{scheme}://{}{}", e.authority(), r.path_and_query);
                json!({
                    "target": format!("{}/{}", provider.name, t.model),
                    "kind": provider.vendor.kind(),
                    "method": "POST",
                    "url": providers::redact_credentials(provider, &url),
                    "headers": headers,
                    "body": serde_json::from_slice::<Value>(&r.body)
                        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&r.body))),
                })
            }
            Err(e) => json!({
                "target": format!("{}/{}", provider.name, t.model),
                "kind": provider.vendor.kind(),
                "error": e.message,
            }),
        };
        targets.push(entry);
    }
    Ok(json!({"model": model.name, "targets": targets}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dashscope_model_shows_the_native_body_with_the_key_masked() {
        let yaml = r#"
providers:
  - {name: ds, kind: dashscope, base_url: "https://dashscope.example", api_key: sk-secret-ds}
models:
  qwen: {targets: [{provider: ds, model: qwen-plus}]}
keys: [{name: k, key: sk-client-key}]
"#;
        let config = crate::config::load_str(yaml, &|_| None).unwrap();
        let body =
            br#"{"model":"qwen","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#;
        let v = preview(&config, body).unwrap();
        let t = &v["targets"][0];
        assert_eq!(t["body"]["input"]["messages"][0]["content"], "hi");
        assert_eq!(t["body"]["parameters"]["temperature"], 0.5);
        assert_eq!(t["headers"]["authorization"], MASKED);
        assert!(!v.to_string().contains("sk-secret-ds"));
    }
}
