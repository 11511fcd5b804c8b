//! `--h2`: HTTP/2 clients over TLS, by `h2load` (Debian's nghttp2-client), against nginx with
//! HTTP/2 on (`listen … ssl http2`: Debian 12's nginx 1.22 predates `http2 on`) and against the gateway (HTTP/2 chosen by ALPN), both in front of the mock over
//! HTTP/1.1, with the same load: c connections of m concurrent streams each, POSTing a chat
//! body. Each system gets its own fresh run; the figure is h2load's requests per second.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{spawn, wait_port, which, CLIENT_KEY, OPENAI_MOCK};

const NGINX_H2: u16 = 19921;
const GATEWAY_H2: u16 = 19922;
const GATEWAY_H2_METRICS: u16 = 19923;

/// Runs the HTTP/2 rows and prints them.
pub(super) fn run(bin: &str, dir: &Path, quick: bool) {
    let (Some(h2load), Some(openssl)) = (which("h2load"), which("openssl")) else {
        eprintln!("h2load or openssl not found (apt-get install nghttp2-client openssl)");
        return;
    };
    let (cert, key) = (dir.join("h2-cert.pem"), dir.join("h2-key.pem"));
    let made = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    // The same request: to nginx in the mock's names (its model and key), to the gateway in
    // its own.
    let body = |name: &str, model: &str| {
        let path = dir.join(name);
        let text = format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"Hello there, how are you today?"}}]}}"#
        );
        std::fs::write(&path, text).expect("writing the body");
        path
    };
    let (direct, gateway) = (
        body("h2-mock.json", "gpt-4o-mini"),
        body("h2-gateway.json", "pass"),
    );
    let requests = if quick { "20000" } else { "100000" };
    println!("\nHTTP/2 over TLS (h2load -n {requests} -c 16 -m 10, POST of a chat body):");
    println!("| system | req/s | vs nginx |");
    println!("| --- | ---: | ---: |");
    let mut nginx_rate = None;
    if let Some(nginx) = which("nginx") {
        let conf = nginx_h2_config(dir, &cert, &key);
        let proc = spawn(
            "nginx-h2",
            Command::new(nginx)
                .arg("-c")
                .arg(&conf)
                .arg("-p")
                .arg(dir)
                .args(["-g", "daemon off;"]),
        );
        wait_port(NGINX_H2);
        nginx_rate = load(&h2load, NGINX_H2, &direct, "sk-mock-openai", requests);
        drop(proc);
        println!("| nginx, HTTP/2 | {} | 1.00x |", shown(nginx_rate));
    }
    let conf = gateway_h2_config(dir, &cert, &key);
    let proc = spawn(
        "modelmux-h2",
        Command::new(bin)
            .args(["serve", "-c"])
            .arg(&conf)
            .env("RUST_LOG", "error"),
    );
    wait_port(GATEWAY_H2);
    let rate = load(&h2load, GATEWAY_H2, &gateway, CLIENT_KEY, requests);
    drop(proc);
    let ratio = rate
        .zip(nginx_rate)
        .map_or(String::new(), |(g, n)| format!("{:.2}x", g / n));
    println!("| modelmux, pass-through | {} | {ratio} |", shown(rate));
}

fn shown(rate: Option<f64>) -> String {
    rate.map_or("failed".into(), |r| format!("{r:.0}"))
}

/// h2load's `finished in …, N req/s` for one run; None if any request failed.
fn load(h2load: &Path, port: u16, body: &Path, key: &str, requests: &str) -> Option<f64> {
    let out = Command::new(h2load)
        .args(["-n", requests, "-c", "16", "-m", "10", "-t", "1"])
        .arg("-d")
        .arg(body)
        .args(["-H", "content-type: application/json"])
        .args(["-H", &format!("authorization: Bearer {key}")])
        .arg(format!("https://127.0.0.1:{port}/v1/chat/completions"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .is_some_and(|l| l.contains(&format!("{requests} 2xx")));
    if !ok {
        eprintln!("h2load on {port}:\n{text}");
        return None;
    }
    let line = text.lines().find(|l| l.starts_with("finished in"))?;
    line.split(", ")
        .nth(1)?
        .trim_end_matches(" req/s")
        .parse()
        .ok()
}

fn nginx_h2_config(dir: &Path, cert: &Path, key: &Path) -> PathBuf {
    let path = dir.join("nginx-h2.conf");
    std::fs::write(
        &path,
        format!(
            r#"
worker_processes 2;
error_log {dir}/nginx-h2-error.log warn;
pid {dir}/nginx-h2.pid;
events {{ worker_connections 30000; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  keepalive_requests 10000000;
  http2_max_concurrent_streams 128;
  upstream openai_mock {{ server 127.0.0.1:{OPENAI_MOCK}; keepalive 256; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{NGINX_H2} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ proxy_pass http://openai_mock; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_buffering off; proxy_request_buffering off; }}
  }}
}}
"#,
            dir = dir.display(),
            cert = cert.display(),
            key = key.display(),
        ),
    )
    .expect("writing the nginx config");
    path
}

fn gateway_h2_config(dir: &Path, cert: &Path, key: &Path) -> PathBuf {
    let base = std::fs::read_to_string(super::gateway_config_at(dir, "modelmux-h2-base.yaml", 2))
        .expect("the bench config");
    let text = base
        .replace(
            &format!("127.0.0.1:{}\"]", super::GATEWAY),
            &format!(
                "127.0.0.1:{GATEWAY_H2}\"]\n  tls: {{cert: \"{}\", key: \"{}\"}}",
                cert.display(),
                key.display()
            ),
        )
        .replace(
            &format!("127.0.0.1:{}", super::GATEWAY_METRICS),
            &format!("127.0.0.1:{GATEWAY_H2_METRICS}"),
        );
    let path = dir.join("modelmux-h2.yaml");
    std::fs::write(&path, text).expect("writing the gateway config");
    path
}
