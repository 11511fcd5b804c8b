//! modelmux: one OpenAI-compatible API in front of many model vendors, on Pingora.

pub mod anthropic_api;
pub mod auth;
pub mod breaker;
pub mod budget;
pub mod chat;
pub mod config;
pub mod edge;
pub mod error;
pub mod gateway;
pub mod http_app;
pub mod limits;
pub mod metrics;
pub mod mock;
pub mod oauth;
pub mod providers;
pub mod relay;
pub mod resilience;
pub mod routing;
pub mod server;
pub mod sse;
pub mod upstream;
