//! The API handlers: authenticate, read and parse the body in the client's API, pick the public
//! model, admit the request under its budget and limits, then hand it to the attempt loop.

use std::sync::Arc;

use bytes::Bytes;

use super::respond::read_body;
use super::{Gateway, Handled, RequestCtx, Session, Stop};
use crate::api::{anthropic, ClientApi};
use crate::config::{ClientKey, Config, PublicModel};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::providers::openai::ChatRequest;
use crate::providers::{rewrite_job_body, ClientRequest, RequestKind, Usage};
use crate::response_store::Stored;
use crate::traffic::limits::{self, Admission};
use crate::traffic::{auth, budget};

impl Gateway {
    /// The caller's key; its position is kept in the context for settling limits and budgets.
    pub(super) fn authenticate<'c>(
        &self,
        config: &'c Config,
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> GwResult<&'c ClientKey> {
        let h = session.req_header();
        // Names made once: a name given as text is parsed at every lookup.
        static X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");
        let presented = auth::presented_key(
            h.headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            h.headers.get(&X_API_KEY).map(|v| v.as_bytes()),
        );
        let now = crate::clock::unix_secs();
        let index = auth::authenticate(config, presented, now, &mut ctx.key_digest)?;
        ctx.key = Some(index);
        let key = &config.keys[index];
        auth::check_access(key, ctx.client_ip, now)?;
        Ok(key)
    }

    pub(super) fn allowed_model<'c>(
        &self,
        config: &'c Config,
        key: &ClientKey,
        name: &str,
    ) -> GwResult<&'c PublicModel> {
        let model = config.model(name).ok_or_else(|| {
            GatewayError::new(
                ErrorKind::UnknownModel,
                format!("The model `{name}` does not exist or you do not have access to it."),
            )
            .with_param(Some("model"))
            .with_code("model_not_found")
        })?;
        if !key.may_use(&model.name) {
            return Err(not_allowed(format!(
                "This API key is not allowed to use the model `{name}`."
            )));
        }
        Ok(model)
    }

    /// `POST /v1/chat/completions`; `model: "app/<name>"` and `"workflow/<name>"` run a prompt
    /// app or a workflow on the last user message.
    pub(super) async fn chat(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        let (config, key, body) = self.accept(session, ctx, ClientApi::OpenAi).await?;
        let request = ChatRequest::parse(&body)?;
        if let Some(app) = request.model.strip_prefix("app/") {
            let mut call: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&body).unwrap_or_default();
            let input = super::flows::last_user_text(&call);
            call.remove("messages");
            let variables = serde_json::Map::from_iter([("user_input".into(), input.into())]);
            let chat = super::flows::app_body(&config, app, &call, &variables)?;
            return Box::pin(self.chat_with(session, ctx, (&config, key), chat)).await;
        }
        if let Some(workflow) = request.model.strip_prefix("workflow/") {
            let call = serde_json::from_slice(&body).unwrap_or_default();
            let run = self.workflow_as_model(session, ctx, &config, workflow, &call);
            return Box::pin(run).await;
        }
        let mut client = ClientRequest::openai(&request);
        let wants = Wants::of(&request);
        self.forward(session, ctx, (&config, key), &body, wants, &mut client)
            .await
    }

    /// A chat body the gateway built (a prompt app's), sent as if the client had.
    pub(super) async fn chat_with(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        (config, key): (&Config, usize),
        chat: serde_json::Value,
    ) -> Handled {
        let body = Bytes::from(serde_json::to_vec(&chat).expect("json serializes"));
        let request = ChatRequest::parse(&body)?;
        let mut client = ClientRequest::openai(&request);
        let wants = Wants::of(&request);
        self.forward(session, ctx, (config, key), &body, wants, &mut client)
            .await
    }

    /// `POST /v1/completions`: OpenAI's legacy API in front of any routed model.
    pub(super) async fn completions(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        let (config, key, body) = self.accept(session, ctx, ClientApi::OpenAiLegacy).await?;
        let (request, prompt) = ChatRequest::parse_legacy(&body)?;
        let mut client = ClientRequest::legacy(&request, prompt)?;
        let wants = Wants::of(&request);
        self.forward(session, ctx, (&config, key), &body, wants, &mut client)
            .await
    }

    /// `POST /v1/embeddings`: as it is to OpenAI-speaking vendors, in batches to the others.
    pub(super) async fn embeddings(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        self.job(session, ctx, RequestKind::Embeddings, |b| {
            ChatRequest::parse_embeddings(b)
        })
        .await
    }

    /// `POST /v1/images/generations`: as it is to OpenAI-speaking vendors; a submitted and
    /// polled task (DashScope), or one call per image batch to the others.
    pub(super) async fn images(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        self.job(session, ctx, RequestKind::Images, |b| {
            ChatRequest::parse_images(b)
        })
        .await
    }

    /// An embeddings or image request, parsed once; a route with `redact_pii` has its texts
    /// redacted in the body, which is parsed again and is what every vendor then gets.
    async fn job(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        kind: RequestKind,
        parse: impl for<'b> Fn(&'b [u8]) -> GwResult<ChatRequest<'b>>,
    ) -> Handled {
        let (config, key, body) = self.accept(session, ctx, ClientApi::OpenAi).await?;
        let request = parse(&body)?;
        let redacts = config.model(&request.model).is_some_and(|m| m.redact_pii);
        let redacted = match redacts {
            true => rewrite_job_body(&body, crate::traffic::redact::redact)?.map(Bytes::from),
            false => None,
        };
        let Some(body) = redacted else {
            let mut client = ClientRequest::job(&request, kind);
            let wants = Wants::of(&request);
            return self
                .forward(session, ctx, (&config, key), &body, wants, &mut client)
                .await;
        };
        let request = parse(&body)?;
        let mut client = ClientRequest::job(&request, kind);
        let wants = Wants::of(&request);
        self.forward(session, ctx, (&config, key), &body, wants, &mut client)
            .await
    }

    /// `POST /v1/messages`: Anthropic's API in front of any routed model.
    pub(super) async fn messages(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        let (config, key, body) = self.accept(session, ctx, ClientApi::Anthropic).await?;
        let (model_name, request) = anthropic::parse_request(&body)?;
        let wants = Wants::typed(&model_name, &request);
        let beta = header_text(session, "anthropic-beta");
        let native = crate::providers::Native {
            api: crate::providers::NativeApi::Anthropic,
            body: &body,
            beta,
            held_by: None,
        };
        let mut client = ClientRequest::native(request, native);
        self.forward(session, ctx, (&config, key), &body, wants, &mut client)
            .await
    }

    /// `POST /v1/responses`: OpenAI's Responses API in front of any routed model. A stored
    /// response named by `previous_response_id` is continued: its conversation goes before the
    /// input, to whatever vendor answers (none of them holds it).
    pub(super) async fn responses(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        let (config, key, body) = self.accept(session, ctx, ClientApi::Responses).await?;
        let mut parsed = crate::api::responses::parse_request(&body)?;
        let owner = &config.keys[key].name;
        let (mut items, held_by) = match &parsed.previous_response_id {
            Some(id) => self.stored_conversation(id, owner).await?,
            None => (Vec::new(), None),
        };
        parsed.continue_from(&items)?;
        let context_bytes = items.iter().map(|i| i.to_string().len()).sum();
        if parsed.store {
            let mut input = std::mem::take(&mut parsed.items);
            crate::api::responses::items_as_stored(&mut input);
            items.extend(input);
            ctx.keep = Some(Box::new(Stored {
                owner: owner.clone(),
                response: serde_json::Value::Null,
                items,
                held_by: None,
            }));
        }
        ctx.turn = Some(parsed.turn.clone());
        let wants = Wants {
            context_bytes,
            ..Wants::typed(&parsed.model, &parsed.request)
        };
        // Its own body goes to vendors that serve the Responses API, unless it continues a
        // response only the gateway holds (then every vendor gets the whole conversation), or
        // its answer is to be cached (the cache keeps answers decoded).
        let native = crate::providers::Native {
            api: crate::providers::NativeApi::Responses,
            body: &body,
            beta: None,
            held_by,
        };
        let cached = config
            .model(&parsed.model)
            .is_some_and(|m| m.cache.is_some());
        let continues_here = parsed.previous_response_id.is_some() && native.held_by.is_none();
        let mut client = match cached || continues_here {
            true => ClientRequest::typed(parsed.request),
            false => ClientRequest::native(parsed.request, native),
        };
        self.forward(session, ctx, (&config, key), &body, wants, &mut client)
            .await
    }

    /// `POST /v1/messages/count_tokens`: Anthropic's own count when the model's first target is
    /// Anthropic; otherwise (or when that count fails) the gateway's estimate: the text and
    /// tool definitions at 4 bytes a token.
    pub(super) async fn count_tokens(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Handled {
        let (config, key, body) = self.accept(session, ctx, ClientApi::Anthropic).await?;
        let (model_name, request) = anthropic::parse_request_for_count(&body)?;
        let model = self.allowed_model(&config, &config.keys[key], &model_name)?;
        let first = model.targets.iter().min_by_key(|t| t.priority);
        if let Some(target) = first.filter(|t| crate::providers::speaks_anthropic(&t.provider)) {
            let beta = header_text(session, "anthropic-beta");
            if let Some(tokens) = self.vendor_token_count(target, &body, beta).await {
                let reply = serde_json::json!({"input_tokens": tokens});
                super::respond::write_value(session, 200, &reply, &[&ctx.common_headers]).await?;
                return Ok(());
            }
        }
        let text: usize = request
            .messages
            .iter()
            .flat_map(|m| m.parts.iter())
            .map(|p| match p {
                crate::providers::model::Part::Text(t) => t.len(),
                _ => 0,
            })
            .sum::<usize>()
            + request
                .tools
                .iter()
                .map(|t| t.name.len() + t.parameters.to_string().len())
                .sum::<usize>();
        let reply = serde_json::json!({"input_tokens": (text / 4).max(1)});
        super::respond::write_value(session, 200, &reply, &[&ctx.common_headers]).await?;
        Ok(())
    }

    /// Authenticates the caller and reads the body, answering in the client's API from here on.
    pub(super) async fn accept(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        api: ClientApi,
    ) -> Result<(Arc<Config>, usize, Bytes), Stop> {
        ctx.api = api;
        let config = ctx.config.clone();
        self.authenticate(&config, session, ctx)?;
        let key = ctx.key.unwrap_or_default();
        let server = &config.server;
        let body = read_body(session, server.max_body_bytes, server.clients.body_timeout).await?;
        Ok((config, key, body))
    }

    /// Picks the public model the key may use, admits the request, and sends it.
    async fn forward(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        (config, key): (&Config, usize),
        body: &Bytes,
        wants: Wants<'_>,
        request: &mut ClientRequest<'_>,
    ) -> Handled {
        let key = &config.keys[key];
        let model = self.allowed_model(config, key, wants.model)?;
        note_request(ctx, model, &key.name, body, wants.stream);
        let prompt_bytes = body.len() + wants.context_bytes;
        ctx.model = Some(model.name.clone());
        ctx.prompt_estimate = prompt_bytes as u64 / 4;
        // Boxed (its stores may be remote), and only when a budget or limit applies: this box
        // and the cache lookup's (`complete`), skipped, save ~2,100 instructions a request.
        if budget::any_for(key) || limits::any_for(key, model) {
            Box::pin(self.admit(ctx, key, model, wants.max_tokens)).await?;
        } else {
            ctx.admission = Some(Admission::default());
        }
        self.complete(session, ctx, request, model).await
    }

    /// Budget and rate limits, before anything goes upstream. Tokens are the body's estimate
    /// (`ctx.prompt_estimate`, about 4 bytes a token) plus the completion the client allows;
    /// the budget holds that estimate until the request is settled in `logging`.
    async fn admit(
        &self,
        ctx: &mut RequestCtx,
        key: &ClientKey,
        model: &PublicModel,
        max_tokens: Option<u64>,
    ) -> GwResult<()> {
        let estimate = Usage::new(ctx.prompt_estimate, max_tokens.unwrap_or(0));
        let price = model.price.as_ref();
        let reservation = self.budgets.reserve(key, &estimate, price).await?;
        match self.limiter.admit(key, model, estimate.total_tokens).await {
            Ok(admission) => {
                ctx.admission = Some(admission);
                ctx.reservation = reservation;
                Ok(())
            }
            Err(e) => {
                if let Some(r) = &reservation {
                    self.budgets.settle(r, &Usage::default(), price).await;
                }
                Err(e)
            }
        }
    }
}

fn header_text(session: &Session, name: &str) -> Option<String> {
    let value = session.req_header().headers.get(name)?;
    value.to_str().ok().map(str::to_string)
}

impl Gateway {
    /// An Anthropic target's own count of a Messages body's input tokens; None when it could
    /// not be had (the caller estimates instead).
    async fn vendor_token_count(
        &self,
        target: &crate::config::Target,
        body: &[u8],
        beta: Option<String>,
    ) -> Option<u64> {
        let provider = &target.provider;
        let vendor = crate::providers::VendorTarget {
            provider,
            vendor_model: &target.model,
            access_token: None,
        };
        let mut request =
            crate::providers::anthropic::encode_native(body, &vendor, beta.as_deref()).ok()?;
        request.path_and_query.push_str("/count_tokens");
        let sent = self.upstreams.send(
            &provider.endpoint,
            &provider.timeouts,
            provider.ca.as_ref(),
            "POST",
            &request,
        );
        let mut exchange = Box::pin(sent)
            .await
            .inspect_err(|e| log::info!("count_tokens at {}: {}", provider.name, e.message))
            .ok()?;
        let status = exchange.status();
        let reply = exchange.read_all(64 * 1024).await.ok()?;
        self.upstreams.release(exchange);
        if !(200..300).contains(&status) {
            log::info!(
                "count_tokens at {} answered {status}; estimated instead",
                provider.name
            );
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&reply).ok()?;
        v.get("input_tokens")?.as_u64()
    }
}

/// A 403 for a model (or workflow) the caller's key may not use.
pub(super) fn not_allowed(message: String) -> GatewayError {
    GatewayError::new(ErrorKind::ModelNotAllowed, message)
        .with_param(Some("model"))
        .with_code("model_not_allowed")
}

/// What a parsed request asks for, whatever its API.
struct Wants<'a> {
    model: &'a str,
    max_tokens: Option<u64>,
    stream: bool,
    /// A stored conversation sent before the body's own input.
    context_bytes: usize,
}

impl<'a> Wants<'a> {
    /// What a request typed from another client API (Anthropic's, the Responses API) asks for.
    fn typed(model: &'a str, r: &crate::providers::model::Request) -> Self {
        Wants {
            model,
            max_tokens: r.max_tokens,
            stream: r.stream,
            context_bytes: 0,
        }
    }

    /// What an OpenAI body (chat, legacy completions, embeddings) asks for; `n` choices are
    /// `n` completions, charged before they are asked for.
    fn of(request: &'a ChatRequest) -> Self {
        Wants {
            model: &request.model,
            max_tokens: request
                .max_tokens()
                .map(|m| m.saturating_mul(request.choices())),
            stream: request.stream,
            context_bytes: 0,
        }
    }
}

/// What the logs say of the request: its size, and its body where the model's `log_bodies`
/// (the access log) or `logs.bodies` (the log store) asks for it.
fn note_request(ctx: &mut RequestCtx, model: &PublicModel, key: &str, body: &Bytes, stream: bool) {
    ctx.bytes_in = body.len();
    ctx.stream = stream;
    let to_store = ctx
        .config
        .logs
        .as_ref()
        .is_some_and(|l| l.bodies.wanted(Some(&model.name), Some(key)));
    let traced = ctx.trace.as_ref().is_some_and(|t| t.captures_content());
    if model.log_bodies || to_store || traced {
        ctx.logged_prompt = Some(body.clone());
    }
}
