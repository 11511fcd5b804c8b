//! Code for a request built in the console's playground (or given to `modelmux codegen` as
//! JSON): curl, Python and Node with the official `openai` SDKs pointed at the gateway, and the
//! YAML route. The client key is read from an environment variable, never written out.

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
}

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
        body.insert("messages".into(), self.messages());
        for (k, v) in &self.params {
            body.insert(k.clone(), v.clone());
        }
        if self.stream {
            body.insert("stream".into(), json!(true));
        }
        Value::Object(body)
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

fn curl(spec: &Spec) -> String {
    let path = if spec.models.len() > 1 {
        "/v1/compare"
    } else {
        "/v1/chat/completions"
    };
    let body = serde_json::to_string_pretty(&spec.body()).expect("json serializes");
    let stream = if spec.stream { "-N " } else { "" };
    format!(
        "curl {stream}{url} \\\n  -H \"Authorization: Bearer ${env}\" \\\n  -H \"Content-Type: application/json\" \\\n  -d {body}\n",
        url = shell_quote(&format!("{}{path}", spec.base_url.trim_end_matches('/'))),
        env = spec.key_env,
        body = shell_quote(&body),
    )
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

fn python(spec: &Spec) -> String {
    let mut args = vec![
        "model=model".to_string(),
        format!("messages={}", py(&spec.messages())),
    ];
    // Names are written only when they are identifiers; any other goes in `extra_body`, as a
    // quoted key. Values are always literals (`py`).
    let (named, other): (Vec<_>, Vec<_>) =
        spec.params.iter().partition(|(k, _)| python_identifier(k));
    for (k, v) in named {
        args.push(format!("{k}={}", py(v)));
    }
    if !other.is_empty() {
        let extra: Map<String, Value> = other
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        args.push(format!("extra_body={}", py(&Value::Object(extra))));
    }
    if spec.stream {
        args.push("stream=True".into());
    }
    let call = format!(
        "    response = client.chat.completions.create(\n        {},\n    )\n",
        args.join(",\n        ")
    );
    let print = if spec.stream {
        "    for chunk in response:\n        if chunk.choices:\n            print(chunk.choices[0].delta.content or \"\", end=\"\", flush=True)\n    print()\n"
    } else {
        "    print(response.choices[0].message.content)\n"
    };
    format!(
        "import os\n\nfrom openai import OpenAI\n\nclient = OpenAI(base_url={base}, api_key=os.environ[{env}])\n\nfor model in {models}:\n    print(f\"--- {{model}}\")\n{call}{print}",
        base = json!(format!("{}/v1", spec.base_url.trim_end_matches('/'))),
        env = json!(spec.key_env),
        models = py(&json!(spec.models)),
    )
}

fn node(spec: &Spec) -> String {
    let mut body = Map::new();
    body.insert("messages".into(), spec.messages());
    for (k, v) in &spec.params {
        body.insert(k.clone(), v.clone());
    }
    if spec.stream {
        body.insert("stream".into(), json!(true));
    }
    // The body is a JSON literal (valid JavaScript) spread into the call beside the model, so
    // nothing the form holds is ever written as code.
    let body = serde_json::to_string_pretty(&Value::Object(body))
        .expect("json serializes")
        .replace('\n', "\n  ");
    let print = if spec.stream {
        "  for await (const chunk of response) {\n    process.stdout.write(chunk.choices[0]?.delta?.content ?? \"\");\n  }\n  console.log();\n"
    } else {
        "  console.log(response.choices[0].message.content);\n"
    };
    format!(
        "import OpenAI from \"openai\";\n\nconst client = new OpenAI({{\n  baseURL: {base},\n  apiKey: process.env.{env},\n}});\n\nfor (const model of {models}) {{\n  console.log(`--- ${{model}}`);\n  const response = await client.chat.completions.create({{ model, ...{body} }});\n{print}}}\n",
        base = json!(format!("{}/v1", spec.base_url.trim_end_matches('/'))),
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
