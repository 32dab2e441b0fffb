//! The token check in front of every route. Off loopback the dashboard
//! shows the whole namespace, so it requires the token; on loopback the
//! token is optional (absent unless configured).

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

#[derive(Clone)]
pub struct Token(pub Option<Arc<str>>);

/// Compares without an early exit, so the time taken does not tell an
/// attacker how much of a guess was right.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented(req: &Request) -> Option<String> {
    if let Some(h) = req.headers().get(axum::http::header::AUTHORIZATION) {
        return h
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
    }
    req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(|t| t.to_string())
    })
}

pub async fn require(State(token): State<Token>, req: Request, next: Next) -> Response {
    let Some(want) = &token.0 else {
        return next.run(req).await;
    };
    match presented(&req) {
        Some(t) if same(t.as_bytes(), want.as_bytes()) => next.run(req).await,
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a token is required: send Authorization: Bearer <token> or add ?token=<token>",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn compare() {
        assert!(super::same(b"abc", b"abc"));
        assert!(!super::same(b"abc", b"abd"));
        assert!(!super::same(b"abc", b"ab"));
    }
}
