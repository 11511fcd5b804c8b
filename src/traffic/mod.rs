//! Traffic policy: who may pass (auth, limits, budgets) and where a request goes (routing,
//! failover, breakers).

pub mod auth;
pub mod breaker;
pub mod budget;
pub mod failover;
pub mod limits;
pub mod redact;
pub mod routing;
