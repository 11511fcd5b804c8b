//! `--instructions`: user-space instructions per request, counted by callgrind. The gateway (or
//! nginx) runs under `valgrind --tool=callgrind` with one worker thread, is driven with N1 and
//! then, started afresh, N2 keep-alive requests from one client, and the figure is
//! (I(N2) − I(N1)) / (N2 − N1): start-up and shutdown cancel out, and the count repeats to
//! within a fraction of a percent however busy the machine is, unlike any timed figure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{spawn, which, Conn, Target, GATEWAY, NGINX_OPENAI};

const N1: u64 = 200;
const N2: u64 = 1200;

/// One system and load to count.
struct Case {
    label: &'static str,
    /// The program and its arguments; `None` when the program is not installed.
    command: Option<Vec<String>>,
    env: Vec<(&'static str, &'static str)>,
    port: u16,
    target: Target,
    /// Divides the per-request figure (chunks per stream).
    per: u64,
}

/// `only`: count just the cases whose label holds it.
pub(super) async fn run(bin: &str, dir: &Path, only: Option<&str>) {
    if which("valgrind").is_none() {
        eprintln!("valgrind not found (apt-get install valgrind)");
        return;
    }
    let hello = "Hello there, how are you today?";
    let fifty = "stream please [[mock words=50]]";
    let gateway = |config: &Path| {
        Some(vec![
            bin.to_string(),
            "serve".into(),
            "-c".into(),
            config.display().to_string(),
        ])
    };
    let config = super::gateway_config_at(dir, "modelmux-callgrind.yaml", 1);
    let traced = traced_config(&config, 1.0);
    let propagated = traced_config(&config, 0.0);
    let nginx = which("nginx").map(|nginx| {
        vec![
            nginx.display().to_string(),
            "-c".into(),
            nginx_config(dir).display().to_string(),
            "-p".into(),
            dir.display().to_string(),
        ]
    });
    let cases = [
        Case {
            label: "nginx, plain proxy",
            command: nginx.clone(),
            env: vec![],
            port: NGINX_OPENAI,
            target: Target::openai_at(NGINX_OPENAI, hello, false),
            per: 1,
        },
        Case {
            label: "modelmux, pass-through",
            command: gateway(&config),
            env: vec![],
            port: GATEWAY,
            target: Target::gateway("pass", hello, false),
            per: 1,
        },
        Case {
            label: "modelmux, pass-through, log store off",
            command: gateway(&config),
            env: vec![("BENCH_LOG_STORE", "off")],
            port: GATEWAY,
            target: Target::gateway("pass", hello, false),
            per: 1,
        },
        Case {
            label: "modelmux, pass-through, access log and log store off",
            command: gateway(&config),
            env: vec![("BENCH_LOG_STORE", "off"), ("BENCH_ACCESS_LOG", "off")],
            port: GATEWAY,
            target: Target::gateway("pass", hello, false),
            per: 1,
        },
        Case {
            label: "modelmux, pass-through, every request traced",
            command: gateway(&traced),
            env: vec![],
            port: GATEWAY,
            target: Target::gateway("pass", hello, false),
            per: 1,
        },
        Case {
            label: "modelmux, pass-through, traces on, none sampled",
            command: gateway(&propagated),
            env: vec![],
            port: GATEWAY,
            target: Target::gateway("pass", hello, false),
            per: 1,
        },
        Case {
            label: "modelmux, translated to Anthropic",
            command: gateway(&config),
            env: vec![],
            port: GATEWAY,
            target: Target::gateway("translated", hello, false),
            per: 1,
        },
        Case {
            label: "modelmux, cache hit",
            command: gateway(&config),
            env: vec![],
            port: GATEWAY,
            target: Target::gateway("cached", hello, false),
            per: 1,
        },
        Case {
            label: "nginx, 50-chunk stream, per chunk",
            command: nginx,
            env: vec![],
            port: NGINX_OPENAI,
            target: Target::openai_at(NGINX_OPENAI, fifty, true),
            per: 50,
        },
        Case {
            label: "modelmux, 50-chunk stream pass-through, per chunk",
            command: gateway(&config),
            env: vec![],
            port: GATEWAY,
            target: Target::gateway("pass", fifty, true),
            per: 50,
        },
        Case {
            label: "modelmux, 50-chunk stream translated, per chunk",
            command: gateway(&config),
            env: vec![],
            port: GATEWAY,
            target: Target::gateway("translated", fifty, true),
            per: 50,
        },
    ];
    println!("\nInstructions per request (callgrind, one worker thread, N1 = {N1}, N2 = {N2}):");
    println!("| system | instructions | vs nginx |");
    println!("| --- | ---: | ---: |");
    let mut nginx_figure = [None, None];
    for case in cases
        .iter()
        .filter(|c| only.is_none_or(|o| c.label.contains(o)))
    {
        let Some(command) = &case.command else {
            println!("| {} | not installed | |", case.label);
            continue;
        };
        let (Some(few), Some(many)) = (
            count(command, case, dir, N1).await,
            count(command, case, dir, N2).await,
        ) else {
            println!("| {} | failed | |", case.label);
            continue;
        };
        let per = many.saturating_sub(few) as f64 / (N2 - N1) as f64 / case.per as f64;
        let slot = usize::from(case.per > 1);
        if case.label.starts_with("nginx") {
            nginx_figure[slot] = Some(per);
        }
        let ratio = nginx_figure[slot].map_or(String::new(), |n| format!("{:.2}x", per / n));
        println!("| {} | {per:.0} | {ratio} |", case.label);
    }
    println!("(profiles for callgrind_annotate in {})", dir.display());
}

/// The instructions a fresh process under callgrind executed in all, having answered `n`
/// requests on one connection.
async fn count(command: &[String], case: &Case, dir: &Path, n: u64) -> Option<u64> {
    let slug: String = case
        .label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let out = dir.join(format!("callgrind.{slug}.{n}.out"));
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--dump-instr=no"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .args(command)
        .env("RUST_LOG", "error")
        .envs(case.env.iter().copied());
    let process = spawn("valgrind", &mut cmd);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut conn = loop {
        if let Ok(c) = Conn::open(case.port).await {
            break c;
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for _ in 0..n {
        let reply = conn.request(&case.target.request, false).await.ok()?;
        if reply.status != 200 {
            eprintln!("{}: HTTP {}", case.label, reply.status);
            return None;
        }
    }
    drop(conn);
    // The log store's writer takes its last rows in; then a stop that runs the exit path
    // (SIGINT for modelmux, SIGTERM nginx's fast shutdown), where callgrind writes its counts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signal = if case.label.starts_with("nginx") {
        libc::SIGTERM
    } else {
        libc::SIGINT
    };
    stop(process, signal);
    totals(&out)
}

fn stop(mut process: super::Proc, signal: i32) {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(process.child.id() as i32, signal) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = process.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `totals:` (or `summary:`) line of a callgrind profile.
fn totals(out: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(out).ok()?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The callgrind config with traces on, `ratio` of them sampled: spans built, queued, encoded
/// as OTLP and exported (to a port nobody listens on: the export fails after the encoding, and
/// is counted; the request's share is all there). Unsampled requests still carry a
/// `traceparent` to the vendor.
fn traced_config(config: &Path, ratio: f64) -> PathBuf {
    let text = std::fs::read_to_string(config).expect("the callgrind config");
    let traced = config.with_file_name(format!("modelmux-callgrind-traced-{ratio}.yaml"));
    let telemetry = format!(
        "telemetry:\n  otlp: {{endpoint: \"http://127.0.0.1:9\", sample_ratio: {ratio}}}\n"
    );
    std::fs::write(&traced, format!("{text}{telemetry}")).expect("writing the traced config");
    traced
}

/// nginx as the plain proxy of the other rows, but one process (no master) that callgrind
/// follows, and root so that it may write the profile where it runs.
fn nginx_config(dir: &Path) -> PathBuf {
    super::nginx_config_at(
        dir,
        "nginx-callgrind.conf",
        "master_process off;\ndaemon off;\nworker_processes 1;\nuser root;",
    )
}
