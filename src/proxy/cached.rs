//! The response cache on the request path: answer from it, or go on to the vendor and store
//! the complete answer afterwards. `Cache-Control: no-cache` skips the read, `no-store` the
//! write; the reply says `x-modelmux-cache: hit | miss | bypass`.
//!
//! A hit counts as a request against the request limits, and spends no tokens: nothing went
//! to a vendor, so token limits and budgets are charged nothing (the client still sees the
//! usage of the answer it got).

use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::http::RequestHeader;

use super::respond::write_json;
use super::{Gateway, RequestCtx, Session, Stop};
use crate::api::ClientApi;
use crate::config::{ModelCache, PublicModel};
use crate::metrics;
use crate::providers::{ClientRequest, Usage};
use crate::traffic::cache::{self, Cached, Lead, Role};

/// A request the cache did not answer: what to store once the vendor answered.
pub(super) struct Pending {
    key: String,
    ttl: Duration,
    write: bool,
    /// Held while the vendor call runs, so identical requests wait for it.
    _lead: Option<Lead>,
}

/// What the cache did with a request.
pub(super) enum Lookup {
    /// The answer came from the cache; it has been written.
    Answered,
    /// Go to the vendor; with a `Pending`, store the answer afterwards.
    Go(Option<Pending>),
}

/// `(read, write)` from the client's `Cache-Control`.
fn cache_control(h: &RequestHeader) -> (bool, bool) {
    let (mut read, mut write) = (true, true);
    let directives = h
        .headers
        .get_all("cache-control")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for d in directives {
        read &= !d.eq_ignore_ascii_case("no-cache");
        write &= !d.eq_ignore_ascii_case("no-store");
    }
    (read, write)
}

/// The model's cache policy, when this request may use it. Legacy completions are not cached:
/// their vendor replies are not decoded.
pub(super) fn cache_policy(ctx: &RequestCtx, model: &PublicModel) -> Option<ModelCache> {
    model.cache.filter(|_| ctx.api != ClientApi::OpenAiLegacy)
}

impl Gateway {
    /// Answers from the cache, or says what to store once the vendor answered.
    pub(super) async fn lookup_cache(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        request: &mut ClientRequest<'_>,
        model: &PublicModel,
        policy: ModelCache,
    ) -> Result<Lookup, Stop> {
        let (read, write) = cache_control(session.req_header());
        let stream = request.stream();
        let typed = request.as_typed()?;
        // A stream of several choices is not put back together; it is not cached.
        let several = stream && typed.n.is_some_and(|n| n > 1);
        if several || (!read && !write) {
            self.mark_cache(ctx, "bypass");
            return Ok(Lookup::Go(None));
        }
        let key_name = ctx
            .key
            .and_then(|i| ctx.config.keys.get(i))
            .map_or("", |k| k.name.as_str());
        let key = cache::key_for(&model.name, &policy, key_name, typed);
        let mut lead = None;
        if read {
            if let Some(c) = self.cache.get(&key).await {
                self.answer_from_cache(session, ctx, request, model, &c)
                    .await?;
                return Ok(Lookup::Answered);
            }
            // With the cache down, identical requests go to the vendor each, without waiting.
            let role = self.cache.shares().then(|| self.cache.join(&key));
            match role {
                None => {}
                Some(Role::Lead(l)) => lead = Some(l),
                Some(Role::Follow(flight)) => {
                    self.cache.follow(flight).await;
                    if let Some(c) = self.cache.get(&key).await {
                        self.answer_from_cache(session, ctx, request, model, &c)
                            .await?;
                        return Ok(Lookup::Answered);
                    }
                }
            }
        }
        self.mark_cache(ctx, "miss");
        ctx.capture = write;
        Ok(Lookup::Go(Some(Pending {
            key,
            ttl: policy.ttl,
            write,
            _lead: lead,
        })))
    }

    /// Stores the complete answer the request got, if it got one.
    pub(super) async fn store_in_cache(&self, ctx: &mut RequestCtx, pending: Pending) {
        if let (true, Some(c)) = (pending.write, ctx.captured.take()) {
            self.cache.put(&pending.key, &c, pending.ttl).await;
        }
    }

    fn mark_cache(&self, ctx: &mut RequestCtx, status: &'static str) {
        if status == "bypass" {
            metrics::CACHE.with_label_values(&["bypass"]).inc();
        }
        ctx.cache_status = Some(status);
        ctx.common_headers
            .push(("x-modelmux-cache", status.to_string()));
    }

    async fn answer_from_cache(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        request: &ClientRequest<'_>,
        model: &PublicModel,
        cached: &Cached,
    ) -> Result<(), Stop> {
        self.mark_cache(ctx, "hit");
        ctx.provider = Some("cache".into());
        match cached {
            Cached::Completion(c) if request.stream() => {
                self.write_as_stream(session, ctx, &model.name, request, c)
                    .await?;
            }
            Cached::Completion(c) => {
                let (body, _) = ctx
                    .api
                    .render_completion(&model.name, ctx.turn.as_deref(), c);
                self.keep_response(ctx, &body).await;
                ctx.first_byte = Some(Instant::now());
                ctx.first_token = ctx.first_byte;
                write_json(session, 200, body, &ctx.success_headers()).await?;
            }
            Cached::Body(body) => {
                ctx.first_byte = Some(Instant::now());
                ctx.first_token = ctx.first_byte;
                let body = Bytes::from(body.clone());
                write_json(session, 200, body, &ctx.success_headers()).await?;
            }
        }
        // Nothing went to a vendor: no tokens are spent (see the module's note).
        ctx.usage = Some(Usage::default());
        Ok(())
    }
}
