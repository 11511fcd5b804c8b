//! Load-test harness: the mock upstream hit directly, nginx as a plain reverse proxy, and
//! modelmux, driven with the same load in one run, so every figure is a ratio taken side by side.
//!
//!     cargo bench --bench harness            # full run, about 2 minutes
//!     cargo bench --bench harness -- --quick # shorter runs, 1,000 slow streams
//!     cargo bench --bench harness -- --quick --ab path/to/other/modelmux  # this build vs another
//!     cargo bench --bench harness -- --held [--quick]  # only the held slow streams' memory
//!     cargo bench --bench harness -- --instructions [LABEL]  # instructions per request, by callgrind
//!     cargo bench --bench harness -- --h2 [--quick]  # HTTP/2 over TLS by h2load, vs nginx
//!     BENCH_MODELMUX=target/dist/modelmux cargo bench --bench harness ...  # another build
//!
//! The load generator is this file: HTTP/1.1 keep-alive over tokio, closed-loop (N connections
//! back to back) or open-loop at a fixed rate (latency measured from the scheduled send time,
//! so a stall is not hidden), with per-chunk arrival times for streams. Every loop is bounded
//! by a duration; only loopback addresses are used.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "harness/h2.rs"]
mod h2;
#[path = "harness/instructions.rs"]
mod instructions;

const MOCK_BASE: u16 = 19800;
const OPENAI_MOCK: u16 = MOCK_BASE + 1;
const ANTHROPIC_MOCK: u16 = MOCK_BASE + 2;
const NGINX_OPENAI: u16 = 19901;
const NGINX_ANTHROPIC: u16 = 19902;
const GATEWAY: u16 = 19910;
const GATEWAY_METRICS: u16 = 19911;
const CLIENT_KEY: &str = "sk-bench-client-key";

struct Settings {
    duration: Duration,
    warmup: Duration,
    connections: usize,
    slow_streams: usize,
}

// --- processes ---------------------------------------------------------------------------------

struct Proc {
    child: Child,
}

impl Drop for Proc {
    /// SIGTERM first, so that nginx's master takes its workers down with it.
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    Proc { child }
}

fn start_nginx(dir: &Path) -> Proc {
    let conf = nginx_config(dir);
    spawn(
        "nginx",
        Command::new(which("nginx").expect("nginx on PATH")).args([
            "-c",
            conf.to_str().unwrap(),
            "-p",
            dir.to_str().unwrap(),
            "-g",
            "daemon off;",
        ]),
    )
}

/// The gateway with the bench config; `BENCH_GATEWAY_<NAME>` variables reach it as `<NAME>`.
fn start_gateway(bin: &str, dir: &Path) -> Proc {
    start_gateway_with(bin, dir, &[])
}

/// The gateway with extra environment (what the config's `${BENCH_…}` references read).
fn start_gateway_with(bin: &str, dir: &Path, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "-c", gateway_config(dir).to_str().unwrap()])
        .env("RUST_LOG", "error")
        .envs(env.iter().copied());
    for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("BENCH_GATEWAY_")) {
        cmd.env(k.trim_start_matches("BENCH_GATEWAY_"), v);
    }
    let gateway = spawn("modelmux", &mut cmd);
    wait_port(GATEWAY);
    std::thread::sleep(Duration::from_millis(200));
    gateway
}

/// `--ab OTHER`: this build and another binary, each started afresh and driven in turn with the
/// pass-through and translated loads five times, so that a change's effect is told from the
/// machine's drift; prints the median req/s and CPU per request of each, and their slow-stream
/// memory.
async fn compare_binaries(this: &str, other: &str, dir: &Path, s: &Settings) {
    const ROUNDS: usize = 5;
    let hello = "Hello there, how are you today?";
    let builds = [("this build", this), ("--ab build", other)];
    let mut figures = vec![vec![Vec::new(); 2]; 2]; // [build][scenario] -> (req/s, µs/req)
    for _ in 0..ROUNDS {
        for (b, (_, bin)) in builds.iter().enumerate() {
            let gateway = start_gateway(bin, dir);
            for (k, model) in ["pass", "translated"].into_iter().enumerate() {
                let run = Run {
                    target: Target::gateway(model, hello, false),
                    connections: s.connections,
                    duration: s.duration,
                    warmup: s.warmup,
                    pace: Pace::Closed,
                    timed_chunks: false,
                };
                let cpu0 = cpu_seconds(gateway.pid());
                let m = drive(run).await;
                let cpu = per_request(cpu_seconds(gateway.pid()) - cpu0, &m);
                figures[b][k].push((m.rps, cpu));
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("\nA/B, {ROUNDS} alternating rounds, medians:");
    println!("| build | scenario | req/s | µs CPU/req | slow streams, KB each |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for (b, (name, bin)) in builds.iter().enumerate() {
        for (k, scenario) in ["1 pass-through", "2 translated"].into_iter().enumerate() {
            let rps = median(figures[b][k].iter().map(|f| f.0).collect());
            let cpu = median(figures[b][k].iter().map(|f| f.1).collect());
            let gateway = start_gateway(bin, dir);
            let model = if k == 0 { "pass" } else { "translated" };
            let slow = Target::gateway(model, "slow [[mock words=30 chunk_delay_ms=1000]]", true);
            let held = hold_slow_streams(1000, slow, gateway.pid(), false).await;
            let kb = held.per_stream_kb().unwrap_or(0.0);
            println!("| {name} | {scenario} | {rps:.0} | {cpu:.1} | {kb:.1} |");
        }
    }
}

fn per_request(cpu_seconds: f64, m: &Measured) -> f64 {
    if m.stats.ok > 0 {
        cpu_seconds / m.stats.ok as f64 * 1e6
    } else {
        0.0
    }
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

/// Resident memory in bytes, from /proc.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// A process and its descendants (nginx's master and workers).
fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            all.extend(tree(c));
        }
    }
    all
}

fn rss_tree(pid: u32) -> u64 {
    tree(pid).into_iter().map(rss).sum()
}

/// CPU time (user + system) of a process in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks)
        })
        .unwrap_or(0.0)
}

fn cpu_tree(pid: u32) -> f64 {
    tree(pid).into_iter().map(cpu_seconds).sum()
}

fn raise_fd_limit() {
    let want = 200_000;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            let max = if lim.rlim_max < want {
                lim.rlim_max
            } else {
                want
            };
            lim.rlim_cur = max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn gateway_config(dir: &Path) -> PathBuf {
    gateway_config_at(dir, "modelmux-bench.yaml", 2)
}

/// The bench config, written as `name` in `dir`, with `threads` worker threads.
fn gateway_config_at(dir: &Path, name: &str, threads: usize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"
server:
  listen: ["127.0.0.1:{GATEWAY}"]
  threads: {threads}
  clients: {{max_connections: 50000}}
metrics:
  listen: "127.0.0.1:{GATEWAY_METRICS}"
log:
  format: ${{BENCH_ACCESS_LOG:-json}}
logs:
  backend: ${{BENCH_LOG_STORE:-sqlite}}
providers:
  - name: openai
    kind: openai
    base_url: http://127.0.0.1:{OPENAI_MOCK}/v1
    api_key: sk-mock-openai
    timeouts: {{idle: 2m, first_byte: 2m, total: 10m}}
    max_in_flight: 50000
  - name: anthropic
    kind: anthropic
    base_url: http://127.0.0.1:{ANTHROPIC_MOCK}
    api_key: sk-ant-mock
    timeouts: {{idle: 2m, first_byte: 2m, total: 10m}}
models:
  pass:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
  translated:
    targets: [{{provider: anthropic, model: claude-sonnet-4}}]
  cached:
    targets: [{{provider: openai, model: gpt-4o-mini}}]
    cache: {{ttl: 1h, scope: global}}
keys:
  - {{name: bench, key: {CLIENT_KEY}}}
"#
        ),
    )
    .expect("writing the gateway config");
    path
}

fn nginx_config(dir: &Path) -> PathBuf {
    nginx_config_at(dir, "nginx.conf", "worker_processes 2;")
}

/// The nginx config, written as `name` in `dir`, its processes as `processes` says.
fn nginx_config_at(dir: &Path, name: &str, processes: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"
{processes}
error_log {dir}/nginx-error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 30000; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  client_max_body_size 32m;
  keepalive_requests 10000000;
  upstream openai_mock {{ server 127.0.0.1:{OPENAI_MOCK}; keepalive 256; keepalive_requests 10000000; }}
  upstream anthropic_mock {{ server 127.0.0.1:{ANTHROPIC_MOCK}; keepalive 256; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{NGINX_OPENAI};
    location / {{ proxy_pass http://openai_mock; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_buffering off; proxy_request_buffering off; }}
  }}
  server {{
    listen 127.0.0.1:{NGINX_ANTHROPIC};
    location / {{ proxy_pass http://anthropic_mock; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_buffering off; proxy_request_buffering off; }}
  }}
}}
"#,
            dir = dir.display()
        ),
    )
    .expect("writing the nginx config");
    path
}

// --- the load generator ------------------------------------------------------------------------

/// One HTTP/1.1 keep-alive connection that knows just enough to find where a response ends.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// What one response looked like to the client.
struct Reply {
    status: u16,
    /// SSE events in the body.
    events: u64,
    /// For stamped streams: how long each stamped chunk took from the mock to this client, µs.
    chunk_delays_us: Vec<u64>,
}

fn epoch_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Finds the mock's `ts` + 16-digit send stamps in `data`.
fn stamps(data: &[u8], mut each: impl FnMut(u64)) {
    let mut i = 0;
    while let Some(p) = find(&data[i..], b"ts") {
        let start = i + p + 2;
        if let Some(digits) = data.get(start..start + 16) {
            if digits.iter().all(u8::is_ascii_digit) {
                each(std::str::from_utf8(digits).unwrap().parse().unwrap());
            }
        }
        i = start;
    }
}

impl Conn {
    async fn open(port: u16) -> io::Result<Conn> {
        let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    async fn fill(&mut self) -> io::Result<Instant> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self.stream.read(&mut tmp).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(Instant::now())
    }

    async fn request(&mut self, req: &[u8], timed_chunks: bool) -> io::Result<Reply> {
        self.stream.write_all(req).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let mut pos = head_end;
        let mut events = 0u64;
        let mut chunk_delays_us = Vec::new();
        match length {
            Some(len) => {
                while self.buf.len() < head_end + len {
                    self.fill().await?;
                }
            }
            None => loop {
                // Chunked: size line, data, CRLF; a zero size ends it.
                let line_end = loop {
                    if let Some(i) = find(&self.buf[pos..], b"\r\n") {
                        break pos + i;
                    }
                    self.fill().await?;
                };
                let size_text = std::str::from_utf8(&self.buf[pos..line_end]).unwrap_or("0");
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
                        .unwrap_or(0);
                let data_end = line_end + 2 + size + 2;
                while self.buf.len() < data_end {
                    self.fill().await?;
                }
                let received = epoch_micros();
                let data = &self.buf[line_end + 2..data_end - 2];
                events += data.windows(5).filter(|w| w == b"data:").count() as u64;
                if timed_chunks {
                    stamps(data, |sent| {
                        chunk_delays_us.push(received.saturating_sub(sent))
                    });
                }
                pos = data_end;
                if size == 0 {
                    break;
                }
            },
        }
        Ok(Reply {
            status,
            events,
            chunk_delays_us,
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn http_post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn openai_body(model: &str, content: &str, stream: bool) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": model, "stream": stream,
        "messages": [{"role": "user", "content": content}],
    }))
    .expect("json")
}

fn anthropic_body(content: &str, stream: bool) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "claude-sonnet-4", "max_tokens": 1024, "stream": stream,
        "messages": [{"role": "user", "content": content}],
    }))
    .expect("json")
}

#[derive(Clone)]
struct Target {
    port: u16,
    request: Arc<Vec<u8>>,
}

impl Target {
    fn gateway(model: &str, content: &str, stream: bool) -> Target {
        let auth = format!("Bearer {CLIENT_KEY}");
        Target {
            port: GATEWAY,
            request: Arc::new(http_post(
                GATEWAY,
                "/v1/chat/completions",
                &[("authorization", &auth)],
                &openai_body(model, content, stream),
            )),
        }
    }
    fn openai_at(port: u16, content: &str, stream: bool) -> Target {
        Target {
            port,
            request: Arc::new(http_post(
                port,
                "/v1/chat/completions",
                &[("authorization", "Bearer sk-mock-openai")],
                &openai_body("gpt-4o-mini", content, stream),
            )),
        }
    }
    fn anthropic_at(port: u16, content: &str, stream: bool) -> Target {
        let headers = [
            ("x-api-key", "sk-ant-mock"),
            ("anthropic-version", "2023-06-01"),
        ];
        Target {
            port,
            request: Arc::new(http_post(
                port,
                "/v1/messages",
                &headers,
                &anthropic_body(content, stream),
            )),
        }
    }
}

#[derive(Default)]
struct Stats {
    latency_us: Option<Histogram<u64>>,
    /// Per-chunk delay from the mock's write to the client's read.
    chunk_delay_us: Option<Histogram<u64>>,
    ok: u64,
    errors: u64,
    chunks: u64,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        for (mine, theirs) in [
            (&mut self.latency_us, other.latency_us),
            (&mut self.chunk_delay_us, other.chunk_delay_us),
        ] {
            match (mine.as_mut(), theirs) {
                (Some(m), Some(t)) => m.add(t).expect("same bounds"),
                (None, Some(t)) => *mine = Some(t),
                _ => {}
            }
        }
        self.ok += other.ok;
        self.errors += other.errors;
        self.chunks += other.chunks;
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

#[derive(Clone, Copy)]
enum Pace {
    /// Each connection sends its next request when the last one is answered.
    Closed,
    /// Requests are due at a fixed total rate; latency counts from when each was due.
    Rate(f64),
}

struct Run {
    target: Target,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    pace: Pace,
    /// Stamped streams: measure each chunk's delay.
    timed_chunks: bool,
}

struct Measured {
    rps: f64,
    stats: Stats,
}

async fn drive(run: Run) -> Measured {
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + run.warmup;
    let end = measure_from + run.duration;
    let interval = match run.pace {
        Pace::Rate(r) => Some(Duration::from_secs_f64(run.connections as f64 / r)),
        Pace::Closed => None,
    };
    let results = Arc::new(Mutex::new(Stats::default()));
    let mut tasks = Vec::new();
    for c in 0..run.connections {
        let target = run.target.clone();
        let results = results.clone();
        let timed = run.timed_chunks;
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats {
                latency_us: Some(histogram()),
                chunk_delay_us: timed.then(histogram),
                ..Stats::default()
            };
            let mut conn = match Conn::open(target.port).await {
                Ok(c) => c,
                Err(_) => {
                    stats.errors += 1;
                    results.lock().unwrap().merge(stats);
                    return;
                }
            };
            // Spread open-loop senders evenly over one interval.
            let mut due = start
                + interval.map_or(Duration::ZERO, |i| {
                    i.mul_f64(c as f64 / run.connections as f64)
                });
            loop {
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let now = Instant::now();
                // Open loop: count from the due time when this connection was still busy then
                // (so a stall is not hidden), but not for the timer's own sub-ms lateness.
                let sent = match interval {
                    Some(_) if now.duration_since(due) > Duration::from_millis(2) => due,
                    _ => now,
                };
                if sent >= end {
                    break;
                }
                let reply = conn.request(&target.request, timed).await;
                let done = Instant::now();
                let counted = sent >= measure_from;
                match reply {
                    Ok(r) if r.status == 200 => {
                        if counted {
                            stats.ok += 1;
                            stats.chunks += r.events;
                            let _ = stats
                                .latency_us
                                .as_mut()
                                .unwrap()
                                .record(done.duration_since(sent).as_micros().max(1) as u64);
                            if let Some(h) = stats.chunk_delay_us.as_mut() {
                                for d in &r.chunk_delays_us {
                                    let _ = h.record((*d).max(1));
                                }
                            }
                        }
                    }
                    _ => {
                        if counted {
                            stats.errors += 1;
                        }
                        match Conn::open(target.port).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
                if let Some(i) = interval {
                    due += i;
                }
            }
            results.lock().unwrap().merge(stats);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let stats = std::mem::take(&mut *results.lock().unwrap());
    Measured {
        rps: stats.ok as f64 / run.duration.as_secs_f64(),
        stats,
    }
}

// --- reporting ---------------------------------------------------------------------------------

struct Row {
    scenario: String,
    system: &'static str,
    rps: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    errors: u64,
    extra: String,
}

fn row(scenario: &str, system: &'static str, m: &Measured, extra: String) -> Row {
    let h = m.stats.latency_us.as_ref();
    let q = |p: f64| h.map_or(0, |h| h.value_at_quantile(p));
    Row {
        scenario: scenario.into(),
        system,
        rps: m.rps,
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        errors: m.stats.errors,
        extra,
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

// --- scenarios ---------------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` compatibility
    }
    let quick = args.iter().any(|a| a == "--quick");
    let s = if quick {
        Settings {
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            connections: 32,
            slow_streams: 1000,
        }
    } else {
        Settings {
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            connections: 64,
            slow_streams: 10_000,
        }
    };
    raise_fd_limit();
    let dir = std::env::temp_dir().join(format!("modelmux-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Another build of the gateway to measure, such as the shipped profile's (`dist`).
    let chosen = std::env::var("BENCH_MODELMUX").ok();
    let bin = chosen.as_deref().unwrap_or(env!("CARGO_BIN_EXE_modelmux"));

    let _mock = spawn(
        "mock",
        Command::new(bin).args([
            "mock",
            "--base-port",
            &MOCK_BASE.to_string(),
            "--threads",
            "2",
        ]),
    );
    let nginx = which("nginx").map(|_| start_nginx(&dir));
    if nginx.is_none() {
        eprintln!("nginx not found: its rows are skipped (apt-get install nginx)");
    }
    for p in [OPENAI_MOCK, ANTHROPIC_MOCK] {
        wait_port(p);
    }
    if nginx.is_some() {
        wait_port(NGINX_OPENAI);
    }
    if args.iter().any(|a| a == "--h2") {
        drop(nginx);
        h2::run(bin, &dir, quick);
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--instructions") {
        drop(nginx);
        let only = args.get(at + 1).filter(|a| !a.starts_with("--"));
        instructions::run(bin, &dir, only.map(String::as_str)).await;
        return;
    }
    if args.iter().any(|a| a == "--held") {
        let fresh = start_gateway(bin, &dir);
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!("Idle RSS of modelmux: {}", mb(rss(fresh.pid())));
        drop(fresh);
        for (label, slow) in held_streams(bin, &dir, nginx, s.slow_streams).await {
            println!("Slow streams, {label}: {}", slow.summary());
        }
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--ab") {
        let other = args
            .get(at + 1)
            .expect("--ab needs the path of a modelmux binary");
        compare_binaries(bin, other, &dir, &s).await;
        return;
    }
    let gateway = start_gateway(bin, &dir);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = rss(gateway.pid());
    let mut rows: Vec<Row> = Vec::new();
    let closed = |target: Target, connections: usize| Run {
        target,
        connections,
        duration: s.duration,
        warmup: s.warmup,
        pace: Pace::Closed,
        timed_chunks: false,
    };

    let mut phases = Vec::new();
    // (1) OpenAI pass-through, non-streaming; (2) OpenAI client -> Anthropic upstream;
    // (5) cache hits.
    let hello = "Hello there, how are you today?";
    for (scenario, direct, via_nginx, via_gateway) in [
        (
            "1 pass-through",
            Target::openai_at(OPENAI_MOCK, hello, false),
            Target::openai_at(NGINX_OPENAI, hello, false),
            Target::gateway("pass", hello, false),
        ),
        (
            "2 translated",
            Target::anthropic_at(ANTHROPIC_MOCK, hello, false),
            Target::anthropic_at(NGINX_ANTHROPIC, hello, false),
            Target::gateway("translated", hello, false),
        ),
        // (5) The same prompt again and again: answered from the response cache.
        (
            "5 cache hits",
            Target::openai_at(OPENAI_MOCK, hello, false),
            Target::openai_at(NGINX_OPENAI, hello, false),
            Target::gateway("cached", hello, false),
        ),
    ] {
        let d = drive(closed(direct, s.connections)).await;
        rows.push(row(scenario, "mock direct", &d, String::new()));
        if let Some(nginx) = &nginx {
            let cpu0 = cpu_tree(nginx.pid());
            let n = drive(closed(via_nginx, s.connections)).await;
            let per_req = per_request(cpu_tree(nginx.pid()) - cpu0, &n);
            rows.push(row(
                scenario,
                "nginx",
                &n,
                format!("RSS {}, {per_req:.0} µs CPU/req", mb(rss_tree(nginx.pid()))),
            ));
        }
        let profile = Profile::start(scenario, gateway.pid());
        let cpu0 = cpu_seconds(gateway.pid());
        let g = drive(closed(via_gateway, s.connections)).await;
        let per_req = per_request(cpu_seconds(gateway.pid()) - cpu0, &g);
        if let Some(profile) = profile {
            phases.push((scenario, profile.finish(), per_req));
        }
        rows.push(row(
            scenario,
            "modelmux",
            &g,
            format!("RSS {}, {per_req:.0} µs CPU/req", mb(rss(gateway.pid()))),
        ));
    }

    // (3) Streaming, 50 chunks per response: translated (Anthropic events -> OpenAI chunks;
    // nginx passes the Anthropic events through) and passed through (OpenAI chunks). Every
    // response has the same 50 chunks, so chunks/s compare as req/s do.
    let fifty = "stream please [[mock words=50]]";
    let mut streams = vec![
        (
            "3 stream 50 chunks",
            "mock direct",
            Target::anthropic_at(ANTHROPIC_MOCK, fifty, true),
        ),
        (
            "3 stream 50 chunks",
            "modelmux",
            Target::gateway("translated", fifty, true),
        ),
        (
            "3 stream 50 chunks, pass-through",
            "mock direct",
            Target::openai_at(OPENAI_MOCK, fifty, true),
        ),
        (
            "3 stream 50 chunks, pass-through",
            "modelmux",
            Target::gateway("pass", fifty, true),
        ),
    ];
    if nginx.is_some() {
        streams.insert(
            1,
            (
                "3 stream 50 chunks",
                "nginx",
                Target::anthropic_at(NGINX_ANTHROPIC, fifty, true),
            ),
        );
        streams.insert(
            4,
            (
                "3 stream 50 chunks, pass-through",
                "nginx",
                Target::openai_at(NGINX_OPENAI, fifty, true),
            ),
        );
    }
    for (scenario, system, target) in streams {
        let m = drive(closed(target, s.connections)).await;
        let chunks = m.stats.chunks as f64 / s.duration.as_secs_f64();
        rows.push(row(scenario, system, &m, format!("{chunks:.0} chunks/s")));
    }
    // Per-chunk delay: the mock stamps each chunk with its send time, 2 ms apart, so every chunk
    // travels on its own; the delay to the client, direct vs through the gateway.
    let spaced = "stream please [[mock words=50 chunk_delay_ms=2 stamp]]";
    let spaced_run = |target: Target| Run {
        target,
        connections: 8,
        duration: s.duration,
        warmup: s.warmup,
        pace: Pace::Closed,
        timed_chunks: true,
    };
    let d = drive(spaced_run(Target::anthropic_at(
        ANTHROPIC_MOCK,
        spaced,
        true,
    )))
    .await;
    let g = drive(spaced_run(Target::gateway("translated", spaced, true))).await;
    let delay = |m: &Measured, q: f64| {
        m.stats
            .chunk_delay_us
            .as_ref()
            .map_or(0, |h| h.value_at_quantile(q))
    };
    let added_chunk = (
        delay(&g, 0.5) as i64 - delay(&d, 0.5) as i64,
        delay(&g, 0.99) as i64 - delay(&d, 0.99) as i64,
    );
    rows.push(row(
        "3 chunk delay",
        "mock direct",
        &d,
        format!(
            "per-chunk delay p50 {} µs, p99 {} µs",
            delay(&d, 0.5),
            delay(&d, 0.99)
        ),
    ));
    rows.push(row(
        "3 chunk delay",
        "modelmux",
        &g,
        format!(
            "per-chunk delay p50 {} µs, p99 {} µs; added p50 {} µs, p99 {} µs",
            delay(&g, 0.5),
            delay(&g, 0.99),
            added_chunk.0,
            added_chunk.1
        ),
    ));

    // (4) Added latency at concurrency 1 and at a fixed 1,000 req/s.
    let mut added = Vec::new();
    for (label, connections, pace) in [
        ("4 latency c=1", 1, Pace::Closed),
        ("4 latency 1000 rps", 16, Pace::Rate(1000.0)),
    ] {
        let mk = |target: Target| Run {
            target,
            connections,
            duration: s.duration,
            warmup: s.warmup,
            pace,
            timed_chunks: false,
        };
        let direct = drive(mk(Target::openai_at(OPENAI_MOCK, hello, false))).await;
        let direct = row(label, "mock direct", &direct, String::new());
        let base = (direct.p50 as i64, direct.p99 as i64);
        rows.push(direct);
        let mut proxies = Vec::new();
        if nginx.is_some() {
            proxies.push(("nginx", Target::openai_at(NGINX_OPENAI, hello, false)));
        }
        proxies.push(("modelmux", Target::gateway("pass", hello, false)));
        for (system, target) in proxies {
            let r = row(label, system, &drive(mk(target)).await, String::new());
            let (p50, p99) = (r.p50 as i64 - base.0, r.p99 as i64 - base.1);
            if system == "modelmux" {
                added.push((label, p50, p99));
            }
            rows.push(Row {
                extra: format!("added p50 {p50} µs, p99 {p99} µs"),
                ..r
            });
        }
    }

    // (6) Request bodies of 100 KiB and 1 MiB, pass-through.
    for (label, size, connections) in [
        ("6 body 100 KiB", 100 * 1024, 16),
        ("6 body 1 MiB", 1024 * 1024, 4),
    ] {
        let content: String = "lorem ipsum ".repeat(size / 12);
        let d = drive(closed(
            Target::openai_at(OPENAI_MOCK, &content, false),
            connections,
        ))
        .await;
        rows.push(row(label, "mock direct", &d, String::new()));
        if nginx.is_some() {
            let n = drive(closed(
                Target::openai_at(NGINX_OPENAI, &content, false),
                connections,
            ))
            .await;
            rows.push(row(label, "nginx", &n, String::new()));
        }
        let g = drive(closed(
            Target::gateway("pass", &content, false),
            connections,
        ))
        .await;
        rows.push(row(
            label,
            "modelmux",
            &g,
            format!("RSS {}", mb(rss(gateway.pid()))),
        ));
    }

    // (8) Pass-through again with the request log store off: what logging each request costs
    // (its row built and queued; the writer thread's inserts on the other core).
    drop(gateway);
    let unlogged = start_gateway_with(bin, &dir, &[("BENCH_LOG_STORE", "off")]);
    let cpu0 = cpu_seconds(unlogged.pid());
    let g = drive(closed(Target::gateway("pass", hello, false), s.connections)).await;
    let per_req = per_request(cpu_seconds(unlogged.pid()) - cpu0, &g);
    rows.push(row(
        "1 pass-through, log store off",
        "modelmux",
        &g,
        format!("{per_req:.0} µs CPU/req (the log store is on in every other row)"),
    ));
    drop(unlogged);

    let slow = held_streams(bin, &dir, nginx, s.slow_streams).await;

    added.push(("3 per chunk, streaming", added_chunk.0, added_chunk.1));
    print_report(&rows, idle_rss, &slow, &added, &phases, quick);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `perf record` of the gateway (with call stacks) during one scenario, when `BENCH_PERF` is
/// set; its samples are then put into the request's phases by the innermost frame that names
/// one, so kernel time lands in the phase whose syscall it serves.
struct Profile {
    perf: Child,
    data: PathBuf,
}

/// Phases and the frames that mark them, innermost match first.
const PHASES: &[(&str, &[&str])] = &[
    ("vendor leg (gateway code)", &["proxy::upstream::"]),
    (
        "encode for the vendor",
        &[
            "providers::encode",
            "::encode_request",
            "::to_vendor",
            "providers::anthropic::encode",
            "providers::gemini::encode",
            "providers::dashscope::encode",
            "providers::qianfan::encode",
        ],
    ),
    (
        "decode the vendor's reply",
        &[
            "proxy::relay",
            "providers::sse",
            "providers::decode",
            "::decode",
            "answer_whole",
            "with_public_model",
            "reply_object",
        ],
    ),
    (
        "limits, budgets, breakers",
        &[
            "traffic::limits",
            "traffic::budget",
            "traffic::breaker",
            "traffic::inflight",
            "traffic::store",
            "traffic::shared",
        ],
    ),
    (
        "connection loop, auth and route",
        &[
            "server::listen",
            "proxy::Served",
            "traffic::auth",
            "traffic::routing",
            "traffic::failover",
            "proxy::router",
            "proxy::handlers",
            "proxy::attempt",
        ],
    ),
    (
        "client request: read and parse",
        &[
            "read_request",
            "api::",
            "wire::ChatRequest",
            "read_body",
            "ClientRequest",
        ],
    ),
    (
        "client response: write",
        &[
            "write_response",
            "finish_body",
            "proxy::respond",
            "write_stream_header",
            "HttpSession::finish",
            "response_duplex",
        ],
    ),
    (
        "metrics and access log",
        &["metrics::", "access_log", "prometheus", "timeline"],
    ),
];

/// Where a sample with no request frame on its stack goes: the standard library is built
/// without frame pointers, so a syscall's stack ends at its libc wrapper and the kernel's
/// socket work cannot be told apart by leg.
const UNATTRIBUTED: &[(&str, &[&str])] = &[
    (
        "kernel: socket send, both legs (loopback delivery included)",
        &[
            "__send",
            "sendto",
            "sendmsg",
            "writev",
            "__libc_write",
            "tcp_sendmsg",
        ],
    ),
    (
        "kernel: socket receive, both legs",
        &["__libc_recv", "recvfrom", "__libc_read", "tcp_recvmsg"],
    ),
    (
        "kernel: connect and close",
        &[
            "__libc_connect",
            "__connect",
            "tcp_v4_connect",
            "__close",
            "tcp_close",
            "__libc_close",
        ],
    ),
    (
        "runtime: scheduler, epoll, timers",
        &[
            "tokio::",
            "epoll",
            "futex",
            "nanosleep",
            "schedule",
            "mio::",
        ],
    ),
    (
        "allocator",
        &[
            "malloc",
            "free",
            "_int_",
            "unlink_chunk",
            "realloc",
            "clear_page",
            "page_fault",
        ],
    ),
];

impl Profile {
    fn start(scenario: &str, pid: u32) -> Option<Profile> {
        std::env::var_os("BENCH_PERF")?;
        let data = PathBuf::from(format!("target/perf-{}.data", scenario.replace(' ', "-")));
        let perf = Command::new("perf")
            .args([
                "record",
                "-q",
                "-F",
                "1999",
                "-g",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("BENCH_PERF: cannot run perf: {e}"))
            .ok()?;
        std::thread::sleep(Duration::from_millis(500));
        Some(Profile { perf, data })
    }

    /// Each phase's share of the samples.
    fn finish(mut self) -> Vec<(&'static str, f64)> {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.perf.id() as i32, libc::SIGINT) };
        let _ = self.perf.wait();
        let script = Command::new("perf")
            .args(["script", "-F", "ip,sym", "-i"])
            .arg(&self.data)
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let all: Vec<&(&str, &[&str])> = PHASES.iter().chain(UNATTRIBUTED).collect();
        let mut counts = vec![0u64; all.len() + 1];
        let marked = |frames: &[&str], table: &[(&str, &[&str])], offset: usize| {
            frames.iter().find_map(|frame| {
                table
                    .iter()
                    .position(|(_, marks)| marks.iter().any(|m| frame.contains(m)))
                    .map(|i| i + offset)
            })
        };
        for sample in script.split("\n\n").filter(|s| !s.trim().is_empty()) {
            let frames: Vec<&str> = sample.lines().collect();
            let phase = marked(&frames, PHASES, 0)
                .or_else(|| marked(&frames, UNATTRIBUTED, PHASES.len()))
                .unwrap_or(all.len());
            counts[phase] += 1;
        }
        let total = counts.iter().sum::<u64>().max(1) as f64;
        all.iter()
            .map(|(name, _)| *name)
            .chain(["other"])
            .zip(counts)
            .map(|(name, n)| (name, n as f64 / total))
            .collect()
    }
}

/// A scenario, each phase's share of its CPU samples, and its CPU per request in µs.
type PhaseShares = (&'static str, Vec<(&'static str, f64)>, f64);

struct SlowStreams {
    wanted: usize,
    opened: usize,
    rss_before: u64,
    rss_held: u64,
    cpu_percent: f64,
}

impl SlowStreams {
    fn summary(&self) -> String {
        let per_stream = self
            .per_stream_kb()
            .map_or("-".into(), |kb| format!("{kb:.1} KB"));
        format!(
            "{} of {} held open; RSS {} before, {} while held ({per_stream} per stream); CPU {:.1}% of one core",
            self.opened,
            self.wanted,
            mb(self.rss_before),
            mb(self.rss_held),
            self.cpu_percent
        )
    }

    fn per_stream_kb(&self) -> Option<f64> {
        let grown = self.rss_held.saturating_sub(self.rss_before);
        (self.opened > 0).then(|| grown as f64 / self.opened as f64 / 1e3)
    }
}

/// (7) Many concurrent slow streams (one chunk a second) held open: memory and CPU per
/// stream, each system freshly started so that no earlier run's freed memory is reused.
async fn held_streams(
    bin: &str,
    dir: &Path,
    nginx: Option<Proc>,
    n: usize,
) -> Vec<(&'static str, SlowStreams)> {
    let slow_content = "slow [[mock words=30 chunk_delay_ms=1000]]";
    let mut slow = Vec::new();
    if nginx.is_some() {
        drop(nginx);
        let fresh = start_nginx(dir);
        wait_port(NGINX_OPENAI);
        // The master listens before its workers are up: their memory belongs in "before".
        tokio::time::sleep(Duration::from_secs(1)).await;
        let target = Target::openai_at(NGINX_OPENAI, slow_content, true);
        slow.push((
            "nginx, pass-through",
            hold_slow_streams(n, target, fresh.pid(), true).await,
        ));
    }
    for (label, model) in [
        ("modelmux, pass-through", "pass"),
        ("modelmux, translated", "translated"),
    ] {
        let fresh = start_gateway(bin, dir);
        let target = Target::gateway(model, slow_content, true);
        slow.push((
            label,
            hold_slow_streams(n, target, fresh.pid(), false).await,
        ));
    }
    slow
}

async fn hold_slow_streams(n: usize, target: Target, pid: u32, tree: bool) -> SlowStreams {
    let rss_of = |pid| if tree { rss_tree(pid) } else { rss(pid) };
    let cpu_of = |pid| {
        if tree {
            cpu_tree(pid)
        } else {
            cpu_seconds(pid)
        }
    };
    let rss_before = rss_of(pid);
    let hold_until = Instant::now() + Duration::from_secs(20);
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let target = target.clone();
        let opened = opened.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut c) = Conn::open(target.port).await else {
                return;
            };
            if c.stream.write_all(&target.request).await.is_err() {
                return;
            }
            // Wait for the response header and the first chunk, then keep reading until the hold ends.
            let mut counted = false;
            while Instant::now() < hold_until {
                match tokio::time::timeout(Duration::from_secs(2), c.fill()).await {
                    Ok(Ok(_)) if !counted => {
                        counted = true;
                        opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(Ok(_)) | Err(_) => {}
                    Ok(Err(_)) => return,
                }
                c.buf.clear();
            }
        }));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Let every stream get going, then measure while they are all held.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let cpu0 = cpu_of(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu_percent = (cpu_of(pid) - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let rss_held = rss_of(pid);
    let opened = opened.load(std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    SlowStreams {
        wanted: n,
        opened,
        rss_before,
        rss_held,
        cpu_percent,
    }
}

fn print_report(
    rows: &[Row],
    idle_rss: u64,
    slow: &[(&str, SlowStreams)],
    added: &[(&str, i64, i64)],
    phases: &[PhaseShares],
    quick: bool,
) {
    let mut out = String::new();
    out.push_str(&format!(
        "modelmux benchmark ({} run, {} cores)\n\n",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    out.push_str(
        "| scenario | system | req/s | p50 µs | p99 µs | p99.9 µs | errors | vs nginx | notes |\n",
    );
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for r in rows {
        let nginx_rps = rows
            .iter()
            .find(|n| n.scenario == r.scenario && n.system == "nginx")
            .map(|n| n.rps);
        let vs = match nginx_rps {
            Some(n) if n > 0.0 && r.system != "mock direct" => format!("{:.2}x", r.rps / n),
            _ => String::new(),
        };
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario, r.system, r.rps, r.p50, r.p99, r.p999, r.errors, vs, r.extra
        ));
    }
    out.push_str(&format!("\nIdle RSS of modelmux: {}\n", mb(idle_rss)));
    for (label, slow) in slow {
        out.push_str(&format!("Slow streams, {label}: {}\n", slow.summary()));
    }
    for (label, p50, p99) in added {
        out.push_str(&format!(
            "Added latency ({label}): p50 {p50} µs, p99 {p99} µs\n"
        ));
    }
    for (scenario, shares, per_req) in phases {
        out.push_str(&format!("\nCPU by phase, {scenario} ({per_req:.0} µs per request, from `perf`):\n\n| phase | share | µs per request |\n| --- | ---: | ---: |\n"));
        for (phase, share) in shares {
            out.push_str(&format!(
                "| {phase} | {:.1}% | {:.1} |\n",
                share * 100.0,
                share * per_req
            ));
        }
    }
    println!("{out}");
    let _ = std::fs::write("target/bench-report.md", &out);
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
