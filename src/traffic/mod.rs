//! Traffic policy: who may pass (auth, limits, budgets) and where a request goes (routing,
//! failover, breakers).

pub(crate) mod auth;
pub(crate) mod breaker;
pub(crate) mod budget;
pub(crate) mod cache;
pub(crate) mod failover;
pub(crate) mod inflight;
pub(crate) mod limits;
pub(crate) mod redact;
pub(crate) mod routing;
pub(crate) mod shared;
pub(crate) mod store;
