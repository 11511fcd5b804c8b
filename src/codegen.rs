//! Code for a request built in the console's playground (or given to `modelmux codegen` as
//! JSON), in the client API it chose (Chat Completions, the Responses API, Anthropic's
//! Messages): curl, Python and Node with the official SDKs (`openai`, `anthropic`) pointed at
//! the gateway, and the YAML route. The client key is read from an environment variable, never
//! written out.

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// What the playground's form holds.
#[derive(Debug, Deserialize)]
pub struct Spec {
    /// The gateway's OpenAI base, without `/v1`.
    #[serde(default = "default_base")]
    pub base_url: String,
    /// One model, or several to compare side by side.
    pub models: Vec<String>,
    #[serde(default)]
    pub system: Option<String>,
    /// The user's message.
    pub prompt: String,
    /// Parameters that are switched on: `temperature`, `max_tokens`, `top_p`, `stop`, `seed`…
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub stream: bool,
    /// The environment variable that holds the client key.
    #[serde(default = "default_key_env")]
    pub key_env: String,
    /// Each model's `models:` entry, for the YAML route (the console fills it from the config).
    #[serde(default)]
    pub routes: Map<String, Value>,
    /// The client API the code speaks.
    #[serde(default)]
    pub api: Api,
}

/// The client APIs the playground speaks.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `POST /v1/chat/completions` (`/v1/compare` for several models).
    #[default]
    Chat,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/messages`, Anthropic's.
    Messages,
}

/// `max_tokens` for Anthropic's Messages API, which requires one, when the form sets none.
const MESSAGES_MAX_TOKENS: u64 = 1024;

fn default_base() -> String {
    "http://127.0.0.1:8080".into()
}

fn default_key_env() -> String {
    "MODELMUX_API_KEY".into()
}

#[derive(Debug, serde::Serialize)]
pub struct Code {
    pub curl: String,
    pub python: String,
    pub node: String,
    pub yaml: String,
    /// The same request in the unified shape (`POST /v1/unified`), with curl and with Python's
    /// standard library.
    pub unified: String,
}

impl Spec {
    fn messages(&self) -> Value {
        let mut m = Vec::new();
        if let Some(s) = self.system.as_deref().filter(|s| !s.is_empty()) {
            m.push(json!({"role": "system", "content": s}));
        }
        m.push(json!({"role": "user", "content": self.prompt}));
        Value::Array(m)
    }

    /// The chat body for one model (or the compare body for several).
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        match self.models.as_slice() {
            [one] => body.insert("model".into(), json!(one)),
            many => body.insert("models".into(), json!(many)),
        };
        let mut rest = self.api_body();
        body.append(&mut rest);
        Value::Object(body)
    }

    /// The parameters in the chosen API's names: the Responses API calls `max_tokens`
    /// `max_output_tokens`, Messages calls `stop` `stop_sequences`; what an API has no name for
    /// (`seed` outside chat, `stop` in the Responses API) is left out.
    fn api_params(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in &self.params {
            let name = match (self.api, k.as_str()) {
                (Api::Chat, _) => k.as_str(),
                (Api::Responses, "max_tokens") => "max_output_tokens",
                (Api::Responses, "stop" | "seed") | (Api::Messages, "seed") => continue,
                (Api::Messages, "stop") => "stop_sequences",
                (_, other) => other,
            };
            out.insert(name.to_string(), v.clone());
        }
        out
    }

    /// The body without `model`: the conversation, the parameters, `stream`.
    fn api_body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        let system = self.system.as_deref().filter(|s| !s.is_empty());
        match self.api {
            Api::Chat => {
                body.insert("messages".into(), self.messages());
            }
            Api::Responses => {
                if let Some(s) = system {
                    body.insert("instructions".into(), json!(s));
                }
                body.insert("input".into(), json!(self.prompt));
            }
            Api::Messages => {
                let max = self.params.get("max_tokens").cloned();
                body.insert(
                    "max_tokens".into(),
                    max.unwrap_or(json!(MESSAGES_MAX_TOKENS)),
                );
                if let Some(s) = system {
                    body.insert("system".into(), json!(s));
                }
                let user = json!([{"role": "user", "content": self.prompt}]);
                body.insert("messages".into(), user);
            }
        }
        for (k, v) in self.api_params() {
            body.entry(k).or_insert(v);
        }
        if self.stream {
            body.insert("stream".into(), json!(true));
        }
        body
    }

    /// The API's path on the gateway.
    fn path(&self) -> &'static str {
        match self.api {
            Api::Chat if self.models.len() > 1 => "/v1/compare",
            Api::Chat => "/v1/chat/completions",
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
        }
    }
}

pub fn generate(spec: &Spec) -> Result<Code, String> {
    if spec.models.is_empty() {
        return Err("choose at least one model".into());
    }
    if !valid_env_name(&spec.key_env) {
        return Err(format!(
            "`{}` is not an environment variable name",
            spec.key_env
        ));
    }
    Ok(Code {
        curl: curl(spec),
        python: python(spec),
        node: node(spec),
        yaml: yaml(spec),
        unified: unified(spec),
    })
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// A string in single quotes for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One curl command per model: compare (several models at once) speaks chat only.
fn curl(spec: &Spec) -> String {
    let bodies: Vec<Value> = match spec.api {
        Api::Chat => vec![spec.body()],
        _ => spec
            .models
            .iter()
            .map(|m| {
                let mut body = Map::new();
                body.insert("model".into(), json!(m));
                body.append(&mut spec.api_body());
                Value::Object(body)
            })
            .collect(),
    };
    let stream = if spec.stream { "-N " } else { "" };
    let auth = match spec.api {
        Api::Messages => format!(
            "-H \"x-api-key: ${}\" \\\n  -H \"anthropic-version: 2023-06-01\"",
            spec.key_env
        ),
        _ => format!("-H \"Authorization: Bearer ${}\"", spec.key_env),
    };
    let url = shell_quote(&format!(
        "{}{}",
        spec.base_url.trim_end_matches('/'),
        spec.path()
    ));
    bodies
        .iter()
        .map(|body| {
            let body = serde_json::to_string_pretty(body).expect("json serializes");
            format!(
                "curl {stream}{url} \\\n  {auth} \\\n  -H \"Content-Type: application/json\" \\\n  -d {}\n",
                shell_quote(&body)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JSON value as a Python literal.
fn py(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(_) | Value::String(_) => v.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(py).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", json!(k), py(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's keywords: names that cannot be a keyword argument.
const PYTHON_KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Whether a parameter's name can stand as a Python keyword argument as it is.
fn python_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !PYTHON_KEYWORDS.contains(&name)
}

/// Whether the Python SDK's `create` has a keyword argument of this name. Anthropic's has
/// dropped the sampling parameters (`temperature`, `top_p`), which then go in `extra_body`;
/// OpenAI's takes any name the API documents, and unknown ones are the caller's to know.
fn python_sdk_takes(api: Api, name: &str) -> bool {
    const MESSAGES: [&str; 7] = [
        "max_tokens",
        "system",
        "messages",
        "stop_sequences",
        "stream",
        "metadata",
        "thinking",
    ];
    api != Api::Messages || MESSAGES.contains(&name)
}

fn python(spec: &Spec) -> String {
    let mut args = vec!["model=model".to_string()];
    // Names are written only when they are identifiers the SDK takes; any other goes in
    // `extra_body`, as a quoted key. Values are always literals (`py`).
    let (named, other): (Vec<_>, Vec<_>) = spec
        .api_body()
        .into_iter()
        .partition(|(k, _)| python_identifier(k) && python_sdk_takes(spec.api, k));
    for (k, v) in named {
        args.push(format!("{k}={}", py(&v)));
    }
    if !other.is_empty() {
        let extra: Map<String, Value> = other.into_iter().collect();
        args.push(format!("extra_body={}", py(&Value::Object(extra))));
    }
    let (import, client, method) = match spec.api {
        Api::Chat => ("from openai import OpenAI", "OpenAI", "chat.completions"),
        Api::Responses => ("from openai import OpenAI", "OpenAI", "responses"),
        Api::Messages => ("from anthropic import Anthropic", "Anthropic", "messages"),
    };
    let call = format!(
        "    response = client.{method}.create(\n        {},\n    )\n",
        args.join(",\n        ")
    );
    let print = match (spec.api, spec.stream) {
        (Api::Chat, true) => "    for chunk in response:\n        if chunk.choices:\n            print(chunk.choices[0].delta.content or \"\", end=\"\", flush=True)\n    print()\n",
        (Api::Chat, false) => "    print(response.choices[0].message.content)\n",
        (Api::Responses, true) => "    for event in response:\n        if event.type == \"response.output_text.delta\":\n            print(event.delta, end=\"\", flush=True)\n    print()\n",
        (Api::Responses, false) => "    print(response.output_text)\n",
        (Api::Messages, true) => "    for event in response:\n        if event.type == \"content_block_delta\" and event.delta.type == \"text_delta\":\n            print(event.delta.text, end=\"\", flush=True)\n    print()\n",
        (Api::Messages, false) => "    print(\"\".join(block.text for block in response.content if block.type == \"text\"))\n",
    };
    // Anthropic's SDK adds `/v1` itself.
    let base = match spec.api {
        Api::Messages => spec.base_url.trim_end_matches('/').to_string(),
        _ => format!("{}/v1", spec.base_url.trim_end_matches('/')),
    };
    format!(
        "import os\n\n{import}\n\nclient = {client}(base_url={base}, api_key=os.environ[{env}])\n\nfor model in {models}:\n    print(f\"--- {{model}}\")\n{call}{print}",
        base = json!(base),
        env = json!(spec.key_env),
        models = py(&json!(spec.models)),
    )
}

fn node(spec: &Spec) -> String {
    let body = spec.api_body();
    // The body is a JSON literal (valid JavaScript) spread into the call beside the model, so
    // nothing the form holds is ever written as code.
    let body = serde_json::to_string_pretty(&Value::Object(body))
        .expect("json serializes")
        .replace('\n', "\n  ");
    let print = match (spec.api, spec.stream) {
        (Api::Chat, true) => "  for await (const chunk of response) {\n    process.stdout.write(chunk.choices[0]?.delta?.content ?? \"\");\n  }\n  console.log();\n",
        (Api::Chat, false) => "  console.log(response.choices[0].message.content);\n",
        (Api::Responses, true) => "  for await (const event of response) {\n    if (event.type === \"response.output_text.delta\") process.stdout.write(event.delta);\n  }\n  console.log();\n",
        (Api::Responses, false) => "  console.log(response.output_text);\n",
        (Api::Messages, true) => "  for await (const event of response) {\n    if (event.type === \"content_block_delta\" && event.delta.type === \"text_delta\") process.stdout.write(event.delta.text);\n  }\n  console.log();\n",
        (Api::Messages, false) => "  console.log(response.content.filter((b) => b.type === \"text\").map((b) => b.text).join(\"\"));\n",
    };
    let (class, package, method, base) = match spec.api {
        Api::Chat => ("OpenAI", "openai", "chat.completions", "/v1"),
        Api::Responses => ("OpenAI", "openai", "responses", "/v1"),
        Api::Messages => ("Anthropic", "@anthropic-ai/sdk", "messages", ""),
    };
    format!(
        "import {class} from \"{package}\";\n\nconst client = new {class}({{\n  baseURL: {base},\n  apiKey: process.env.{env},\n}});\n\nfor (const model of {models}) {{\n  console.log(`--- ${{model}}`);\n  const response = await client.{method}.create({{ model, ...{body} }});\n{print}}}\n",
        base = json!(format!("{}{base}", spec.base_url.trim_end_matches('/'))),
        env = spec.key_env,
        models = json!(spec.models),
    )
}

/// The unified request for the first model: `{"model_type", "model", "params"}`.
fn unified_body(spec: &Spec) -> Value {
    let mut params = Map::new();
    params.insert("prompt".into(), json!(spec.prompt));
    if let Some(s) = spec.system.as_deref().filter(|s| !s.is_empty()) {
        params.insert("system".into(), json!(s));
    }
    for (k, v) in &spec.params {
        params.insert(k.clone(), v.clone());
    }
    json!({"model_type": "text_generation", "model": spec.models[0], "params": params})
}

fn unified(spec: &Spec) -> String {
    let base = spec.base_url.trim_end_matches('/');
    let body = serde_json::to_string_pretty(&unified_body(spec)).expect("json serializes");
    format!(
        "# curl\ncurl {url} \\\n  -H \"Authorization: Bearer ${env}\" \\\n  -H \"Content-Type: application/json\" \\\n  -d {quoted}\n\n\
         # Python (standard library only)\nimport json, os, urllib.request\n\n\
         request = urllib.request.Request(\n    {url_py},\n    data=json.dumps({body_py}).encode(),\n    \
         headers={{\"Authorization\": \"Bearer \" + os.environ[{env_py}], \"Content-Type\": \"application/json\"}},\n)\n\
         response = json.load(urllib.request.urlopen(request))\nprint(response[\"output\"])\n",
        url = shell_quote(&format!("{base}/v1/unified")),
        env = spec.key_env,
        quoted = shell_quote(&body),
        url_py = json!(format!("{base}/v1/unified")),
        body_py = py(&unified_body(spec)),
        env_py = json!(spec.key_env),
    )
}

fn yaml(spec: &Spec) -> String {
    let routes: Map<String, Value> = spec
        .models
        .iter()
        .filter_map(|m| spec.routes.get(m).map(|r| (m.clone(), r.clone())))
        .collect();
    if routes.is_empty() {
        return "# The models' routes are in the gateway's config (models: section).\n".into();
    }
    serde_yaml_ng::to_string(&json!({"models": routes})).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(models: &[&str], stream: bool) -> Spec {
        serde_json::from_value(json!({
            "models": models, "prompt": "It's \"quoted\"", "system": "Be brief.",
            "params": {"temperature": 0.7, "max_tokens": 64, "stop": ["\n"]}, "stream": stream,
            "routes": {"a": {"targets": [{"provider": "openai", "model": "gpt-4o"}]}},
        }))
        .unwrap()
    }

    #[test]
    fn curl_quotes_the_body_and_reads_the_key_from_the_environment() {
        let code = generate(&spec(&["a"], false)).unwrap();
        assert!(code
            .curl
            .contains("'http://127.0.0.1:8080/v1/chat/completions'"));
        assert!(code.curl.contains("$MODELMUX_API_KEY"));
        assert!(code.curl.contains(r#"It'\''s"#));
        let compare = generate(&spec(&["a", "b"], true)).unwrap();
        assert!(compare.curl.contains("/v1/compare") && compare.curl.contains("\"models\""));
    }

    #[test]
    fn python_and_node_use_the_sdk_with_each_parameter() {
        let code = generate(&spec(&["a", "b"], true)).unwrap();
        assert!(code
            .python
            .contains("api_key=os.environ[\"MODELMUX_API_KEY\"]"));
        assert!(code.python.contains("temperature=0.7") && code.python.contains("stream=True"));
        assert!(code.python.contains("for model in [\"a\", \"b\"]:"));
        assert!(code.node.contains("apiKey: process.env.MODELMUX_API_KEY"));
        assert!(code.node.contains("create({ model, ...{"));
        assert!(code.yaml.contains("provider: openai"));
        assert!(
            code.unified.contains("/v1/unified") && code.unified.contains("response[\"output\"]")
        );
        assert!(code.unified.contains("\"model_type\": \"text_generation\""));
        assert!(generate(&Spec {
            key_env: "$(rm)".into(),
            ..spec(&["a"], false)
        })
        .is_err());
    }

    #[test]
    fn each_api_gets_its_path_body_names_and_sdk() {
        let mut s = spec(&["a", "b"], false);
        s.api = Api::Responses;
        let code = generate(&s).unwrap();
        assert_eq!(
            code.curl.matches("/v1/responses'").count(),
            2,
            "{}",
            code.curl
        );
        assert!(code.curl.contains("\"max_output_tokens\": 64") && !code.curl.contains("\"stop\""));
        assert!(
            code.python.contains("client.responses.create(")
                && code.python.contains("instructions=\"Be brief.\"")
        );
        assert!(code.python.contains("print(response.output_text)"));
        assert!(code.node.contains("client.responses.create({ model, ...{"));
        s.api = Api::Messages;
        s.stream = true;
        let code = generate(&s).unwrap();
        assert!(
            code.curl.contains("x-api-key: $MODELMUX_API_KEY")
                && code.curl.contains("/v1/messages'")
        );
        assert!(
            code.curl.contains("\"stop_sequences\"") && code.curl.contains("\"max_tokens\": 64")
        );
        assert!(code.python.contains("from anthropic import Anthropic"));
        assert!(code.python.contains("base_url=\"http://127.0.0.1:8080\","));
        assert!(
            code.python.contains("client.messages.create(")
                && code.python.contains("system=\"Be brief.\"")
        );
        assert!(code.python.contains("content_block_delta"));
        assert!(
            code.node
                .contains("import Anthropic from \"@anthropic-ai/sdk\"")
                && code.node.contains("new Anthropic({")
        );
    }

    #[test]
    fn parameter_names_are_never_written_as_code() {
        let mut s = spec(&["a"], false);
        s.params.insert(
            "temperature=__import__(\"os\").system(\"id\")".into(),
            json!(1),
        );
        s.params.insert("import".into(), json!(2));
        s.params.insert("seed".into(), json!("MODEL"));
        let code = generate(&s).unwrap();
        let as_argument = |l: &str| l.trim_start().starts_with("temperature=__import__");
        assert!(!code.python.lines().any(as_argument), "{}", code.python);
        assert!(
            code.python.contains(
                r#"extra_body={"temperature=__import__(\"os\").system(\"id\")": 1, "import": 2}"#
            ),
            "{}",
            code.python
        );
        assert!(code.python.contains("seed=\"MODEL\""));
        assert!(code.node.contains("\"seed\": \"MODEL\""), "{}", code.node);
    }
}
