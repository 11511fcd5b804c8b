//! modelmux: one OpenAI-compatible API in front of many model vendors, on Pingora.
//!
//! The folders are the architecture, bottom to top; each depends only on the ones above it in
//! this list:
//! - `error`, `metrics`, `clock`, `http_app`, `drain`: the one client-facing error type, the
//!   Prometheus registry, wall-clock seconds, helpers shared by every HTTP listener, and the
//!   process's way out (draining on SIGTERM and after an upgrade's hand-over).
//! - `config`: the YAML file into one immutable runtime snapshot.
//! - `providers`: one module of pure, network-free functions per vendor over one internal model.
//! - `api`: what clients speak (OpenAI chat, Anthropic Messages, the models list).
//! - `traffic`: who may pass and where to: auth, routing, failover, breakers, limits, budgets.
//! - `proxy`: the Pingora phases, the router, the attempt loop, the upstream leg, the relay.
//! - `admin`: the admin listener (reload, status, effective config) and the reload triggers.
//! - `server`: assembles the listeners; `mock`: the mock vendors.
//!
//! `config` and `server` are what the binary uses; `providers`, `api` and `error` are public for
//! the translation benchmarks. Everything else is crate-private, so the compiler reports dead code.

pub(crate) mod admin;
pub mod api;
pub(crate) mod clock;
pub mod codegen;
pub mod config;
pub(crate) mod drain;
pub mod error;
pub mod flows;
pub(crate) mod http_app;
pub(crate) mod key_store;
pub(crate) mod log_store;
pub(crate) mod metrics;
pub(crate) mod mock;
pub mod providers;
pub(crate) mod proxy;
pub(crate) mod random;
pub(crate) mod response_store;
pub mod server;
pub(crate) mod telemetry;
pub(crate) mod timeline;
pub(crate) mod traffic;
