//! The attempt loop: a request goes to its model's targets in the configured order until one
//! answers, and the answer is relayed to the client in its API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Session;
use bytes::Bytes;

use super::cached::{self, Lookup};
use super::relay::{self, Handling, Relay};
use super::respond::{client_gone, write_json, write_stream_header};
use super::upstream::{Exchange, MAX_UPSTREAM_BODY};
use super::{Gateway, Handled, RequestCtx, Stop};
use crate::api;
use crate::config::{Endpoint, Provider, PublicModel, Secret, Target, Timeouts, Vendor};
use crate::drain;
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::metrics;
use crate::providers::model::Completion;
use crate::providers::{
    self, openai, qianfan, ClientRequest, RequestKind, StreamState, Usage, VendorTarget,
};
use crate::traffic::breaker::{Breaker, Health};
use crate::traffic::cache::Cached;
use crate::traffic::{failover, redact, routing};

/// How one attempt at one target ended.
enum Outcome {
    /// The vendor answered and the answer went to the client (a stream that broke part-way
    /// included: that was reported in-band, and nothing can be retried once bytes are out).
    Answered,
    /// The request is the client's mistake (the vendor's 4xx other than 429, or one found
    /// before sending): passed on as it is, never retried.
    Rejected(GatewayError),
    /// The target failed (unreachable, slow, 5xx, 429, garbage): it counts against the target,
    /// and another attempt may follow while nothing has reached the client.
    TargetFailed(GatewayError),
    /// The client hung up or its connection broke: says nothing about the target.
    ClientGone(Box<pingora::Error>),
}

impl Outcome {
    fn of(result: Handled) -> Outcome {
        match result {
            Ok(()) => Outcome::Answered,
            Err(Stop::Reply(e)) if failover::counts_against_target(&e) => Outcome::TargetFailed(e),
            Err(Stop::Reply(e)) => Outcome::Rejected(e),
            Err(Stop::Downstream(e)) => Outcome::ClientGone(e),
        }
    }

    /// The status the vendor's error came with (none when it answered, or never did).
    fn vendor_status(&self) -> Option<u16> {
        match self {
            Outcome::Rejected(e) | Outcome::TargetFailed(e) => e.status,
            Outcome::Answered | Outcome::ClientGone(_) => None,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Outcome::Answered | Outcome::Rejected(_) => "ok",
            Outcome::TargetFailed(e) => e.kind.as_str(),
            Outcome::ClientGone(_) => "client_gone",
        }
    }
}

impl Gateway {
    /// Sends the request to the model's targets in their configured order and relays the reply
    /// in the client's API. Before any byte has reached the client, a failed attempt (connect
    /// error, timeout, 5xx, 429, no first byte in time) moves on to the next healthy target,
    /// with exponential backoff and jitter, honouring `Retry-After`, within the route's deadline.
    pub(super) async fn complete(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        request: &mut ClientRequest<'_>,
        model: &PublicModel,
    ) -> Handled {
        if model.redact_pii {
            request.rewrite_text(redact::redact)?;
        }
        // Rare or store-bound steps are boxed: a future is as large as its largest state, and
        // every open stream holds the whole of it (docs/performance.md).
        // Only for a model that caches: the box, and the move of the lookup's state into it,
        // are not free (see `forward`).
        let pending = match cached::cache_policy(ctx, model) {
            Some(policy) => {
                let lookup = Box::pin(self.lookup_cache(session, ctx, request, model, policy));
                let Lookup::Go(pending) = lookup.await? else {
                    return Ok(());
                };
                pending
            }
            None => None,
        };
        let result = self.try_targets(session, ctx, request, model).await;
        if let (Ok(()), Some(pending)) = (&result, pending) {
            Box::pin(self.store_in_cache(ctx, pending)).await;
        }
        result
    }

    /// The attempt loop proper.
    async fn try_targets(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        request: &mut ClientRequest<'_>,
        model: &PublicModel,
    ) -> Handled {
        let policy = &model.retry;
        let deadline = ctx.start + policy.deadline;
        let sticky = (model.targets.len() > 1)
            .then(|| sticky_session(session, request))
            .flatten();
        let order = routing::attempt_order(model, sticky.as_deref());
        let breakers: Vec<Arc<Breaker>> = order
            .iter()
            .map(|t| self.breakers.get(&t.provider.name, &t.model))
            .collect();
        let mut plan = failover::Plan::new(order.len());
        let mut last: Option<GatewayError> = None;
        for attempt in 0..policy.attempts {
            let Some((index, panic)) = self.pick(&plan, &order, &breakers) else {
                break;
            };
            let target = order[index];
            if attempt > 0 {
                let moved = plan.previous() != Some(index);
                let Some(wait) = retry_wait(model, attempt, last.as_ref(), moved, deadline) else {
                    break;
                };
                note_retry(model, target, moved, wait, last.as_ref());
                tokio::time::sleep(wait).await;
            }
            plan.mark(index);
            let provider = &target.provider;
            let Some(_slot) =
                self.in_flight
                    .enter(&provider.name, &target.model, provider.max_in_flight)
            else {
                continue;
            };
            let breaker = &breakers[index];
            if !breaker.admit(panic) {
                continue;
            }
            note_target(ctx, target);
            let timeouts = model.timeouts.apply(&provider.timeouts);
            // The attempt's span, paired by position with the record pushed below.
            if let Some(trace) = ctx.trace.as_mut() {
                trace.begin_attempt();
            }
            let began = Instant::now();
            let result = self
                .attempt_with_token(session, ctx, request, target, &timeouts, &model.name)
                .await;
            let outcome = Outcome::of(result);
            ctx.attempts.push(crate::log_store::Attempt {
                provider: provider.name.clone(),
                model: target.model.clone(),
                outcome: outcome.label().into(),
                status: outcome.vendor_status(),
                duration_ms: began.elapsed().as_secs_f64() * 1000.0,
            });
            metrics::ATTEMPTS
                .with_label_values(&[&provider.name, outcome.label()])
                .inc();
            // Each attempt's error is its own target's, counted now: not the target that
            // answers after a failover.
            if let Some(kind) = ctx.upstream_error {
                metrics::UPSTREAM_ERRORS
                    .with_label_values(&[&provider.name, kind.as_str()])
                    .inc();
            }
            // A request's failures count once per target: a poison request retried on the same
            // target must not open its breaker for everyone else.
            let first_try = plan.tries(index) == 1;
            record(breaker, ctx, &outcome, first_try);
            if let Outcome::Answered = outcome {
                breaker.observe_latency(began.elapsed());
            }
            match outcome {
                Outcome::Answered => return Ok(()),
                Outcome::Rejected(e) => return Err(Stop::Reply(e)),
                Outcome::ClientGone(e) => return Err(Stop::Downstream(e)),
                Outcome::TargetFailed(e) if session.response_written().is_some() => {
                    let target = ctx.target().unwrap_or_default();
                    self.timeline.note_error(target, &e.to_string());
                    return Err(Stop::Reply(e));
                }
                Outcome::TargetFailed(e) => {
                    let target = ctx.target().unwrap_or_default();
                    self.timeline.note_error(target, &e.to_string());
                    // The next attempt starts clean: its target is judged on its own answer.
                    ctx.upstream_error = None;
                    last = Some(e)
                }
            }
        }
        Err(last
            .unwrap_or_else(|| {
                GatewayError::new(
                    ErrorKind::UpstreamOverloaded,
                    "Every target for this model is busy with as many requests as it is allowed; try again shortly.",
                )
                .with_retry_after(Some(1))
            })
            .into())
    }

    /// The next target: the plan's pick among ready targets, or in panic mode (none ready) the
    /// cooling one whose cooldown ends first. None when every target is saturated.
    fn pick(
        &self,
        plan: &failover::Plan,
        order: &[&Target],
        breakers: &[Arc<Breaker>],
    ) -> Option<(usize, bool)> {
        let health: Vec<Health> = order
            .iter()
            .zip(breakers)
            .map(|(t, breaker)| {
                let p = &t.provider;
                if self.in_flight.full(&p.name, &t.model, p.max_in_flight) {
                    Health::Saturated
                } else {
                    breaker.health()
                }
            })
            .collect();
        let ready: Vec<bool> = health.iter().map(|h| *h == Health::Ready).collect();
        match plan.next(&ready) {
            Some(index) => Some((index, false)),
            None => failover::soonest_cooled(&health).map(|index| (index, true)),
        }
    }

    /// One attempt at one target; a Qianfan access token the vendor rejects is refreshed and
    /// the attempt repeated once.
    async fn attempt_with_token(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        request: &mut ClientRequest<'_>,
        target: &Target,
        timeouts: &Timeouts,
        public_model: &str,
    ) -> Handled {
        let provider = &target.provider;
        let mut refreshed = false;
        loop {
            // A JWT the gateway signs, or an OAuth access token (Qianfan v1), or none for
            // providers that authenticate with a key. Only a fetch is boxed (its state is
            // large): a box costs an allocation and a move of the whole state, needed or not.
            let token = match (&provider.jwt, &provider.vendor) {
                (Some(jwt), _) => Some(self.jwt_tokens.token(&provider.name, jwt)),
                (
                    None,
                    Vendor::QianfanV1 {
                        client_id,
                        client_secret,
                        token_endpoint,
                    },
                ) => Some(
                    Box::pin(self.fetched_token(
                        provider,
                        client_id,
                        client_secret,
                        token_endpoint,
                    ))
                    .await
                    .inspect_err(|e| ctx.upstream_error = Some(e.kind))?,
                ),
                (None, _) => None,
            };
            let vendor_target = VendorTarget {
                provider,
                vendor_model: &target.model,
                access_token: token.as_deref(),
            };
            let result = self
                .attempt(
                    session,
                    ctx,
                    request,
                    &vendor_target,
                    timeouts,
                    public_model,
                )
                .await;
            match result {
                Err(Stop::Reply(e)) if e.kind == ErrorKind::UpstreamTokenExpired && !refreshed => {
                    refreshed = true;
                    if let Some(t) = &token {
                        self.tokens.invalidate(&provider.name, t).await;
                    }
                }
                other => return other,
            }
        }
    }

    /// An OAuth access token (Qianfan v1) fetched once per expiry however many requests wait
    /// for it.
    async fn fetched_token(
        &self,
        provider: &Provider,
        client_id: &Secret,
        client_secret: &Secret,
        token_endpoint: &Endpoint,
    ) -> GwResult<Arc<str>> {
        let fetch = || async {
            let request = qianfan::token_request(client_id, client_secret, token_endpoint);
            let mut ex = self
                .upstreams
                .send(
                    token_endpoint,
                    &provider.timeouts,
                    provider.ca.as_ref(),
                    "POST",
                    &request,
                )
                .await?;
            let status = ex.status();
            let body = ex.read_all(64 * 1024).await?;
            self.upstreams.release(ex);
            let token = qianfan::read_token_reply(status, &body)?;
            log::info!("fetched a new access token for provider {}", provider.name);
            Ok(token)
        };
        // Whatever the token call's failure says (the vendor's text, a connection error) is
        // told without the client credentials, as every vendor call's is.
        self.tokens
            .token(&provider.name, fetch)
            .await
            .map_err(|mut e| {
                e.message = providers::redact_credentials(provider, &e.message);
                if e.kind == ErrorKind::UpstreamAuth {
                    e.message = format!("{} {}", providers::credentials_of(provider), e.message);
                }
                e
            })
    }

    async fn attempt(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        request: &mut ClientRequest<'_>,
        target: &VendorTarget<'_>,
        timeouts: &Timeouts,
        public_model: &str,
    ) -> Handled {
        let provider = target.provider;
        if request.kind().is_job() && !request.goes_as_is_to(provider) {
            let job = self.run_job(session, ctx, request, target, timeouts, public_model);
            return Box::pin(job).await;
        }
        let mut upstream_request = providers::encode_chat(request, target)?;
        upstream_request
            .headers
            .push(("x-request-id", ctx.request_id.clone()));
        if let Some(trace) = &ctx.trace {
            upstream_request.headers.extend(trace.vendor_headers());
        }
        let native = request.goes_as_is_to(provider);
        if let Some(record) = ctx.keep.as_mut() {
            // A response the vendor stores itself can be continued there as it is.
            record.held_by = native.then(|| provider.name.clone());
        }
        let dropped = ctx.turn.as_ref().map_or(&[][..], |t| &t.dropped_tools[..]);
        if !native && !dropped.is_empty() {
            let header = "x-modelmux-dropped-tools";
            if ctx.common_headers.iter().all(|(k, _)| *k != header) {
                ctx.common_headers.push((header, dropped.join(", ")));
            }
        }
        // A client that hangs up while the vendor thinks cancels the vendor's request. Watching
        // costs a syscall, so only replies slower than a few milliseconds are watched.
        let watch = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client_gone(session).await
        };
        let sent = tokio::select! {
            sent = Box::pin(self.upstreams.send(&provider.endpoint, timeouts, provider.ca.as_ref(), "POST", &upstream_request)) => sent,
            gone = watch => return Err(Stop::Downstream(gone)),
        };
        let mut exchange = sent.inspect_err(|e| ctx.upstream_error = Some(e.kind))?;

        let status = exchange.status();
        if !(200..300).contains(&status) {
            let e = Box::pin(self.vendor_error(provider, exchange)).await;
            ctx.upstream_error = Some(e.kind);
            return Err(e.into());
        }
        // Servers that omit the content type on a stream are taken at their word.
        let is_sse = exchange
            .content_type()
            .is_none_or(|c| c.contains("event-stream"));
        if request.stream() && is_sse {
            let relay = Relay::new(
                ctx.api,
                provider,
                public_model,
                request.include_usage(),
                ctx.turn.as_ref(),
                handling(ctx, request, provider),
            );
            return self.relay_stream(session, ctx, exchange, relay).await;
        }
        let body = exchange
            .read_all(MAX_UPSTREAM_BODY)
            .await
            .inspect_err(|e| ctx.upstream_error = Some(e.kind))?;
        self.upstreams.release(exchange);
        self.answer_whole(session, ctx, request, provider, public_model, &body)
            .await
    }

    /// A vendor's non-2xx answer as the client's error. Only a connection whose error body was
    /// read to the end can be reused.
    pub(super) async fn vendor_error(
        &self,
        provider: &Provider,
        mut exchange: Exchange,
    ) -> GatewayError {
        let retry_after = exchange
            .header_str("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = exchange.read_all(1024 * 1024).await;
        let e = providers::map_error(
            provider,
            exchange.status(),
            retry_after,
            body.as_deref().unwrap_or_default(),
        );
        if body.is_ok() {
            self.upstreams.release(exchange);
        }
        e
    }

    /// Relays a stream event by event as the vendor sends it; never buffers it whole. Once the
    /// header is out, failures can only be reported in-band, as a final error event.
    async fn relay_stream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut exchange: Exchange,
        mut relay: Relay,
    ) -> Handled {
        write_stream_header(session, &ctx.success_headers()).await?;
        ctx.first_byte = Some(Instant::now());
        let mut ending = Box::pin(drain::ending());
        // Ended by the gateway's own shutdown: says nothing about the vendor.
        let mut ended_here = false;
        let state = loop {
            // A buffer of each piece's own size, handed on without a copy: an open stream holds
            // no buffer while it waits for the vendor.
            let mut out = Vec::new();
            // Mid-stream, a client that hung up fails the next write, which drops the vendor's
            // connection; only the wait for the first byte needs watching (`client_gone`). A
            // process whose grace period is over ends the stream with its error event.
            let next = tokio::select! {
                // In order (no random draw at every chunk), the end of the grace period first.
                biased;
                () = ending.as_mut(), if !ended_here => {
                    ended_here = true;
                    Err(shutting_down())
                }
                next = exchange.next_chunk() => next,
            };
            let state = match next {
                Ok(Some(chunk)) => {
                    out.reserve(chunk.len() + 256);
                    relay.push(&chunk, &mut out)
                }
                Ok(None) => relay.finish(&mut out),
                Err(e) => {
                    if !ended_here {
                        ctx.upstream_error = Some(e.kind);
                    }
                    relay.fail(e, &mut out)
                }
            };
            // Kept as it arrives, so a client that leaves early is still charged what it used.
            ctx.usage = relay.usage();
            ctx.received_tokens = relay.received_tokens();
            if let Some(response) = relay.completed_response() {
                // Stored before the event that ends the reply is written: a client can go on
                // from it the moment it has read it.
                self.store_response(ctx, response).await;
            }
            if !out.is_empty() {
                if let Some(trace) = ctx.trace.as_mut().filter(|t| t.sampled) {
                    trace.reply.read_stream(&out);
                }
                ctx.first_token.get_or_insert_with(Instant::now);
                session.write_response_body(Bytes::from(out), false).await?;
            }
            if state != StreamState::Open {
                break state;
            }
        };
        session.finish_body().await?;
        ctx.captured = relay.completed().map(Cached::Completion);
        if state == StreamState::Done && exchange_drained(&mut exchange).await {
            self.upstreams.release(exchange);
        } else if state == StreamState::Failed && ctx.upstream_error.is_none() && !ended_here {
            ctx.upstream_error = Some(ErrorKind::UpstreamBadResponse);
        }
        Ok(())
    }
}

/// Why a stream the gateway had to end stopped: the process is going away (its grace period
/// is over), not the vendor.
fn shutting_down() -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamOverloaded,
        "The gateway is shutting down and ended this stream before it finished; retry the request.",
    )
}

/// Feeds a finished attempt to its target's breaker. A client that hung up says nothing about
/// the target, so it only gives back a half-open probe slot; so does a request rejected before
/// the vendor saw it, and a failure this request already counted against the target.
fn record(breaker: &Breaker, ctx: &RequestCtx, outcome: &Outcome, first_try: bool) {
    match outcome {
        Outcome::Answered => breaker.record(true),
        Outcome::Rejected(_) if ctx.upstream_error.is_some() => breaker.record(true),
        Outcome::TargetFailed(_) if first_try => breaker.record(false),
        Outcome::Rejected(_) | Outcome::ClientGone(_) | Outcome::TargetFailed(_) => {
            breaker.release()
        }
    }
}

/// A vendor's whole (non-streamed) answer, in the client's API. A stream request answered
/// with one JSON body (an error in a 200 from Qianfan v1, or a vendor that had nothing to
/// stream) still gets a real status for an error, and a reply replayed as a stream.
impl Gateway {
    async fn answer_whole(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        request: &ClientRequest<'_>,
        provider: &Provider,
        public_model: &str,
        body: &[u8],
    ) -> Handled {
        if request.kind().is_job() {
            let (reply, usage) = match request.kind() {
                RequestKind::Embeddings => openai::decode_embeddings_raw(public_model, body),
                _ => openai::check_images_raw(body),
            }
            .inspect_err(|e| ctx.upstream_error = Some(e.kind))?;
            // Images count by the image (priced per image), unless the vendor counted tokens.
            ctx.usage = usage.or_else(|| request.images_made(&reply));
            if ctx.capture {
                ctx.captured = Some(Cached::Body(String::from_utf8_lossy(&reply).into_owned()));
            }
            ctx.first_byte = Some(Instant::now());
            write_json(session, 200, reply, &ctx.success_headers()).await?;
            return Ok(());
        }
        if request.stream() {
            let completion = providers::decode_chat(provider, body)
                .inspect_err(|e| ctx.upstream_error = Some(e.kind))?;
            let usage = self
                .write_as_stream(session, ctx, public_model, request, &completion)
                .await?;
            ctx.usage = usage;
            return Ok(());
        }
        let (reply, usage, completion) = relay::render_reply(
            ctx.api,
            provider,
            public_model,
            ctx.turn.as_deref(),
            body,
            handling(ctx, request, provider),
        )
        .inspect_err(|e| ctx.upstream_error = Some(e.kind))?;
        ctx.usage = usage;
        ctx.captured = completion.map(Cached::Completion);
        if let Some(trace) = ctx.trace.as_mut().filter(|t| t.sampled) {
            trace.reply.read_body(&reply);
        }
        if ctx.logged_prompt.is_some() {
            ctx.logged_reply = Some(reply.clone());
        }
        self.keep_response(ctx, &reply).await;
        ctx.first_byte = Some(Instant::now());
        ctx.first_token = ctx.first_byte;
        write_json(session, 200, reply, &ctx.success_headers()).await?;
        Ok(())
    }

    /// A whole reply written as a stream in the client's API; its usage.
    pub(super) async fn write_as_stream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        public_model: &str,
        request: &ClientRequest<'_>,
        c: &Completion,
    ) -> Result<Option<Usage>, Stop> {
        let mut out = Vec::new();
        let include_usage = request.include_usage();
        let turn = ctx.turn.as_ref();
        let writer = api::replay_as_stream(ctx.api, public_model, include_usage, turn, c, &mut out);
        if let Some(response) = writer.completed_response() {
            self.store_response(ctx, response).await;
        }
        write_stream_header(session, &ctx.success_headers()).await?;
        ctx.first_byte = Some(Instant::now());
        ctx.first_token = ctx.first_byte;
        if let Some(trace) = ctx.trace.as_mut().filter(|t| t.sampled) {
            trace.reply.read_stream(&out);
        }
        session.write_response_body(Bytes::from(out), true).await?;
        Ok(writer.usage())
    }
}

/// A session keeps its target (A/B splits): `x-session-id`, or the request's `user`.
fn sticky_session(session: &Session, request: &ClientRequest) -> Option<String> {
    static X_SESSION_ID: http::HeaderName = http::HeaderName::from_static("x-session-id");
    session
        .req_header()
        .headers
        .get(&X_SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.user().map(|u| u.into_owned()))
}

/// How long to wait before trying again, or None when no retry should start: the same target
/// after it did not answer in time (it is not waited for twice), or past the deadline.
fn retry_wait(
    model: &PublicModel,
    attempt: u32,
    last: Option<&GatewayError>,
    moved: bool,
    deadline: Instant,
) -> Option<Duration> {
    // A target that timed out is not waited for twice; one that refused the gateway's
    // credentials will refuse them again.
    if !moved
        && last
            .is_some_and(|e| matches!(e.kind, ErrorKind::UpstreamTimeout | ErrorKind::UpstreamAuth))
    {
        return None;
    }
    let wait = failover::backoff(&model.retry, attempt, last, moved);
    Instant::now()
        .checked_add(wait)
        .filter(|at| *at < deadline)
        .map(|_| wait)
}

/// Which target the attempt goes to, for the access log and `x-modelmux-target`.
fn note_target(ctx: &mut RequestCtx, target: &Target) {
    ctx.provider = Some(target.provider.name.clone());
    ctx.vendor_model = Some(target.model.clone());
    ctx.target_header = [(
        "x-modelmux-target",
        [&target.provider.name, "/", &target.model].concat(),
    )];
}

fn handling(ctx: &RequestCtx, request: &ClientRequest, provider: &Provider) -> Handling {
    if ctx.capture {
        Handling::Capture
    } else if request.goes_as_is_to(provider) {
        Handling::PassThrough
    } else {
        Handling::Translate
    }
}

fn note_retry(
    model: &PublicModel,
    target: &Target,
    moved: bool,
    wait: Duration,
    last: Option<&GatewayError>,
) {
    metrics::RETRIES
        .with_label_values(&[
            model.name.as_str(),
            if moved { "failover" } else { "retry" },
        ])
        .inc();
    log::info!(
        "retrying {} on {}/{} in {wait:?} after: {}",
        model.name,
        target.provider.name,
        target.model,
        last.map_or(String::new(), |e| e.to_string())
    );
}

/// After `[DONE]` the vendor's body should be at its end; only then may the connection be
/// reused. A vendor that keeps it open longer is not waited for.
async fn exchange_drained(exchange: &mut Exchange) -> bool {
    let end = tokio::time::timeout(Duration::from_millis(100), exchange.next_chunk());
    matches!(end.await, Ok(Ok(None)))
}
