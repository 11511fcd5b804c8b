//! The Responses API's stored responses: kept as a reply finishes (before its last event or
//! byte goes out, so a client can go on from it at once), continued by `previous_response_id`,
//! read by `GET /v1/responses/{id}` and `…/input_items`, forgotten by `DELETE`. A key sees only
//! the responses it created.

use bytes::Bytes;
use serde_json::{json, Value};

use super::respond::write_value;
use super::{Gateway, Handled, RequestCtx, Session};
use crate::error::{ErrorKind, GatewayError};
use crate::response_store::Stored;

/// The most items one `input_items` page lists, and how many unless asked.
const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;

fn not_found(id: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::NotFound,
        format!("Response with id '{id}' not found."),
    )
}

impl Gateway {
    /// Completes a reply's record with its finished Response object and keeps it, when the
    /// request asked for it to be stored. The response is copied only then: `store: false`
    /// costs nothing.
    pub(super) async fn store_response(&self, ctx: &mut RequestCtx, response: &Value) {
        let Some(mut record) = ctx.keep.take() else {
            return;
        };
        let Some(id) = response
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return;
        };
        record.response = response.clone();
        self.responses.put(&id, &record).await;
    }

    /// As `store_response`, from a whole reply's body.
    pub(super) async fn keep_response(&self, ctx: &mut RequestCtx, body: &Bytes) {
        if ctx.keep.is_some() {
            if let Ok(response) = serde_json::from_slice(body) {
                self.store_response(ctx, &response).await;
            }
        }
    }

    /// The conversation a request continues, when it names a stored response its key created,
    /// and the provider that holds that response too (if one does).
    pub(super) async fn stored_conversation(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<(Vec<Value>, Option<String>), GatewayError> {
        match self.responses.get(id, owner).await {
            Some(stored) => {
                let held_by = stored.held_by.clone();
                Ok((stored.conversation(), held_by))
            }
            None => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("Previous response with id '{id}' not found."),
            )
            .with_param(Some("previous_response_id"))
            .with_code("previous_response_not_found")),
        }
    }

    /// `GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`.
    pub(super) async fn stored_response(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        rest: &str,
    ) -> Handled {
        ctx.api = crate::api::ClientApi::Responses;
        let config = ctx.config.clone();
        let owner = self.authenticate(&config, session, ctx)?.name.clone();
        let method = session.req_header().method.clone();
        let (id, items) = match rest.split_once('/') {
            Some((id, "input_items")) => (id, true),
            Some(_) => return Err(GatewayError::new(ErrorKind::NotFound, "Unknown path.").into()),
            None => (rest, false),
        };
        let reply = match (method.as_str(), items) {
            ("GET", false) => self.fetch(id, &owner).await?.response,
            ("GET", true) => {
                let query = session.req_header().uri.query().unwrap_or("");
                page(self.fetch(id, &owner).await?.items, query)?
            }
            ("DELETE", false) => match self.responses.delete(id, &owner).await {
                true => json!({"id": id, "object": "response", "deleted": true}),
                false => return Err(not_found(id).into()),
            },
            _ => {
                return Err(GatewayError::new(
                    ErrorKind::MethodNotAllowed,
                    format!("{method} is not allowed here."),
                )
                .into())
            }
        };
        write_value(session, 200, &reply, &[&ctx.common_headers]).await?;
        Ok(())
    }

    async fn fetch(&self, id: &str, owner: &str) -> Result<Stored, GatewayError> {
        self.responses
            .get(id, owner)
            .await
            .ok_or_else(|| not_found(id))
    }
}

/// One page of a response's input items: `limit` (1–100, 20), `order` (`desc`, the default, or
/// `asc`), `after` (an item id).
fn page(mut items: Vec<Value>, query: &str) -> Result<Value, GatewayError> {
    let mut limit = DEFAULT_PAGE;
    let mut after = None;
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        match k {
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE).contains(l))
                    .ok_or_else(|| {
                        GatewayError::bad_param("limit", "limit must be between 1 and 100.")
                    })?
            }
            "order" if v == "asc" => {}
            "order" if v == "desc" => items.reverse(),
            "order" => return Err(GatewayError::bad_param("order", "order is asc or desc.")),
            "after" => after = Some(v.to_string()),
            _ => {}
        }
    }
    if !query.split('&').any(|kv| kv.starts_with("order=")) {
        items.reverse();
    }
    let start = match after {
        Some(a) => items
            .iter()
            .position(|i| i.get("id").and_then(Value::as_str) == Some(a.as_str()))
            .map_or(items.len(), |p| p + 1),
        None => 0,
    };
    let data: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + data.len() < items.len();
    let id_of = |i: Option<&Value>| i.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    Ok(
        json!({"object": "list", "first_id": id_of(data.first()), "last_id": id_of(data.last()),
              "has_more": has_more, "data": data}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": format!("i{i}")})).collect()
    }

    fn ids(v: &Value) -> Vec<&str> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn pages_newest_first_unless_asked() {
        let p = page(items(3), "").unwrap();
        assert_eq!(ids(&p), ["i2", "i1", "i0"]);
        let p = page(items(3), "order=asc&limit=2").unwrap();
        assert_eq!(
            (ids(&p), p["has_more"].as_bool()),
            (vec!["i0", "i1"], Some(true))
        );
        let p = page(items(3), "order=asc&after=i1").unwrap();
        assert_eq!(
            (ids(&p), p["has_more"].as_bool()),
            (vec!["i2"], Some(false))
        );
        assert!(page(items(3), "limit=0").is_err());
        assert!(page(items(3), "order=up").is_err());
    }
}
