//! modelmux: one OpenAI-compatible API in front of many model vendors, on Pingora.

pub mod auth;
pub mod chat;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http_app;
pub mod metrics;
pub mod mock;
pub mod providers;
pub mod routing;
pub mod server;
pub mod sse;
pub mod upstream;
