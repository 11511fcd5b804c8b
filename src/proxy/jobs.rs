//! Runs a vendor job (embeddings in batches, images one call each, a DashScope task submitted
//! and polled) as one attempt: its calls one after another, within the target's total timeout,
//! watching for a client that hangs up.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::respond::{client_gone, write_json};
use super::upstream::MAX_UPSTREAM_BODY;
use super::{Gateway, Handled, RequestCtx, Session, Stop};
use crate::api::openai::jobs::job_reply;
use crate::config::{Provider, Timeouts};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::providers::job::Call;
use crate::providers::{self, ClientRequest, Usage, VendorTarget};
use crate::traffic::cache::Cached;

/// The most an abandoned job's cancel call may hold up the request.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

impl Gateway {
    pub(super) async fn run_job(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        request: &ClientRequest<'_>,
        target: &VendorTarget<'_>,
        timeouts: &Timeouts,
        public_model: &str,
    ) -> Handled {
        let provider = target.provider;
        let mut job = providers::start_job(request, target, public_model)?;
        let deadline = Instant::now() + timeouts.total;
        while let Some(call) = job.next_call() {
            if Instant::now() + call.after >= deadline {
                self.abandon(job.abandon(), provider, timeouts).await;
                ctx.upstream_error = Some(ErrorKind::UpstreamTimeout);
                let secs = timeouts.total.as_secs();
                return Err(GatewayError::new(
                    ErrorKind::UpstreamTimeout,
                    format!("The vendor did not finish the job within {secs} s."),
                )
                .into());
            }
            // A client that hangs up while the vendor works (or between polls) ends the job,
            // and the vendor is told when it can be.
            let watch = async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                client_gone(session).await
            };
            let made = async {
                tokio::time::sleep(call.after).await;
                self.make_call(provider, &call, timeouts).await
            };
            let body = tokio::select! {
                made = made => made,
                gone = watch => {
                    self.abandon(job.abandon(), provider, timeouts).await;
                    return Err(Stop::Downstream(gone));
                }
            };
            let read = body.and_then(|body| job.read(&body));
            read.inspect_err(|e| ctx.upstream_error = Some(e.kind))?;
        }
        let output = job.output();
        let (reply, usage) = job_reply(public_model, &output, request.wants_base64());
        let usage = match &output {
            providers::job::JobOutput::Images(i) => Some(request.image_usage(i.images.len())),
            _ => usage,
        };
        // Vendors that count no tokens (Gemini embeddings) are charged the gateway's estimate.
        ctx.usage = usage.map(|u| match u.total_tokens {
            0 => Usage::new(ctx.prompt_estimate, 0),
            _ => u,
        });
        if ctx.capture {
            ctx.captured = Some(Cached::Body(String::from_utf8_lossy(&reply).into_owned()));
        }
        ctx.first_byte = Some(Instant::now());
        write_json(session, 200, reply, &ctx.success_headers()).await?;
        Ok(())
    }

    /// One call of a job: its 2xx body, or the vendor's error.
    async fn make_call(
        &self,
        provider: &Provider,
        call: &Call,
        timeouts: &Timeouts,
    ) -> GwResult<Bytes> {
        let (endpoint, ca) = match &call.to {
            Some(elsewhere) => (elsewhere, None),
            None => (&provider.endpoint, provider.ca.as_ref()),
        };
        let mut exchange = self
            .upstreams
            .send(endpoint, timeouts, ca, call.method, &call.request)
            .await?;
        let status = exchange.status();
        if !(200..300).contains(&status) {
            if call.to.is_some() {
                return Err(GatewayError::new(
                    ErrorKind::UpstreamError,
                    format!("The vendor's generated image could not be fetched (HTTP {status})."),
                ));
            }
            return Err(self.vendor_error(provider, exchange).await);
        }
        let body = exchange.read_all(MAX_UPSTREAM_BODY).await?;
        self.upstreams.release(exchange);
        Ok(body)
    }

    /// Tells the vendor a job is abandoned (cancels a pending task), best effort and briefly.
    async fn abandon(&self, cancel: Option<Call>, provider: &Provider, timeouts: &Timeouts) {
        let Some(call) = cancel else { return };
        let cancel = self.make_call(provider, &call, timeouts);
        match tokio::time::timeout(CANCEL_TIMEOUT, cancel).await {
            Ok(Ok(_)) => log::info!("canceled an abandoned job at provider {}", provider.name),
            _ => log::info!(
                "could not cancel an abandoned job at provider {}",
                provider.name
            ),
        }
    }
}
