#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use modelmux::{codegen, config, server};

/// Transparent huge pages off for this process: each allocator arena a thread touches would
/// otherwise be backed by a 2 MiB page (mimalloc asks for them), 29 MB resident at idle
/// against 15 MB with 4 KiB pages; the request path runs the same instructions either way.
/// Done first, before the threads start, and for every THP mode (`always` too, as RHEL ships).
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes no pointers; a failure (an old kernel) changes nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[derive(Parser)]
#[command(
    name = "modelmux",
    version,
    about = "An OpenAI-compatible gateway in front of many model vendors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. `SIGHUP` reloads the config; `SIGQUIT` hands the listening sockets to
    /// a new binary started with `--upgrade`, then drains.
    Serve {
        /// The YAML config.
        #[arg(short, long, default_value = "conf/modelmux.yaml")]
        config: String,
        /// Take over the listening sockets of a running gateway (graceful binary upgrade).
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config and print every problem with its YAML path; exit 1 on any.
    Check {
        #[arg(short, long, default_value = "conf/modelmux.yaml")]
        config: String,
    },
    /// Print code for a request (curl, Python, Node, the YAML route) from the JSON the
    /// console's playground builds: {"models", "prompt", "system", "params", "stream",
    /// "base_url", "key_env", "routes"}.
    Codegen {
        /// The JSON file; `-` (the default) reads standard input.
        #[arg(short, long, default_value = "-")]
        file: String,
        /// Only this one: curl, python, node, yaml or unified.
        #[arg(long)]
        lang: Option<String>,
    },
    /// Client keys: `new` prints a fresh key and its SHA-256 (for `keys[].key_sha256`, so the
    /// config holds no secret); `hash` prints the SHA-256 of the key on standard input.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Print the config file's JSON Schema (conf/modelmux.schema.json), for editors and
    /// validators.
    Schema,
    /// Run the mock vendors on loopback: OpenAI on base-port+1, Anthropic +2, DashScope +3,
    /// Qianfan +4, Gemini +5.
    Mock {
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        #[arg(long, default_value_t = 9800)]
        base_port: u16,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// With --tls-key: also serve each vendor over TLS on base-port+11..+15.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<String>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// A fresh key, and its SHA-256.
    New,
    /// The SHA-256 of the key read from standard input (not an argument: it would be in the
    /// shell's history and the process list).
    Hash,
}

fn init_logging() {
    // Pingora's socket transfer is driven by the gateway (server/upgrade.rs), which logs it;
    // Pingora's own receiver would log an error for each poll that finds nothing yet.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,modelmux=info,pingora_core::server::transfer_fd=off",
        )
    });
    // Diagnostics on stderr, so that stdout is the access log's alone (its default place).
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    without_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match config::load_file(&config) {
            Ok(c) => {
                println!(
                    "{config}: ok ({} providers, {} models, {} keys)",
                    c.providers.len(),
                    c.models.len(),
                    c.keys.len()
                );
                ExitCode::SUCCESS
            }
            Err(problems) => {
                eprint!("{config}: {} problem(s)\n{problems}", problems.0.len());
                ExitCode::FAILURE
            }
        },
        Command::Key {
            action: KeyAction::New,
        } => {
            let key = config::new_client_key();
            println!("key:        {key}");
            println!(
                "key_sha256: {}",
                config::hex(&config::key_hash(key.as_bytes()))
            );
            ExitCode::SUCCESS
        }
        Command::Key {
            action: KeyAction::Hash,
        } => match std::io::read_to_string(std::io::stdin()) {
            Ok(text) if !text.trim().is_empty() => {
                println!("{}", config::hex(&config::key_hash(text.trim().as_bytes())));
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("key hash: give the key on standard input");
                ExitCode::FAILURE
            }
        },
        Command::Codegen { file, lang } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&file)
            };
            let code = text
                .map_err(|e| format!("cannot read {file}: {e}"))
                .and_then(|t| serde_json::from_str::<codegen::Spec>(&t).map_err(|e| e.to_string()))
                .and_then(|spec| codegen::generate(&spec));
            let code = code.and_then(|c| {
                Ok(match lang.as_deref() {
                    None => format!(
                        "# curl\n{}\n# Python\n{}\n# Node\n{}\n# YAML\n{}\n# Unified\n{}",
                        c.curl, c.python, c.node, c.yaml, c.unified
                    ),
                    Some("curl") => c.curl,
                    Some("python") => c.python,
                    Some("node") => c.node,
                    Some("yaml") => c.yaml,
                    Some("unified") => c.unified,
                    Some(other) => {
                        return Err(format!(
                            "unknown language `{other}` (curl, python, node, yaml, unified)"
                        ))
                    }
                })
            });
            match code {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("codegen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config, upgrade } => {
            init_logging();
            match config::load_file(&config) {
                Ok(c) => server::run_gateway(
                    c,
                    server::Launch {
                        config_path: config,
                        upgrade,
                    },
                ),
                Err(problems) => {
                    eprint!("{config}: {} problem(s)\n{problems}", problems.0.len());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Schema => {
            print!("{}", config::json_schema());
            ExitCode::SUCCESS
        }
        Command::Mock {
            bind,
            base_port,
            threads,
            tls_cert,
            tls_key,
        } => {
            init_logging();
            let tls = tls_cert
                .zip(tls_key)
                .map(|(cert, key)| server::MockTls { cert, key });
            server::run_mock(&bind, base_port, threads.max(1), tls)
        }
    }
}
