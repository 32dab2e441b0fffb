//! Acting on nodes from the page: drain, cancel a drain, scrub now, forget
//! a stopped node, start a rebalance. Each route calls the coordinator's
//! own handler (`coord::cmd::maintain`, the one `dfs-sim drain` and friends
//! reach over the wire) and is broadcast as an event to every open page.
//!
//! Deny by default: an action needs the admin token (`X-DFS-Admin: T`), a
//! second secret beside the read token the page already carries. Without a
//! configured admin token every action is refused. A refused request
//! changes nothing: the check runs before the handler.

use crate::auth::same;
use crate::error::ApiError;
use crate::events::ActionEvent;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use coord::cmd::maintain;
use protocol::NodeId;

/// The header that carries the admin token.
pub const ADMIN_HEADER: &str = "x-dfs-admin";

fn check_admin(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(want) = s.admin_token() else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "actions are off: start the coordinator with --http-admin-token-file (or a cluster secret)",
        ));
    };
    match headers.get(ADMIN_HEADER).and_then(|v| v.to_str().ok()) {
        Some(t) if same(t.trim().as_bytes(), want.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this action needs the admin token: send X-DFS-Admin: <token>",
        )),
    }
}

fn node_id(s: &str) -> Result<NodeId, ApiError> {
    NodeId::new(s).map_err(|e| ApiError::bad_request(format!("invalid node: {e}")))
}

async fn act(
    s: &AppState,
    action: &'static str,
    node: Option<NodeId>,
    res: Result<String, coord::Error>,
) -> Result<Json<ActionEvent>, ApiError> {
    let ev = ActionEvent {
        at_ms: coord::cmd::now_ms(),
        action,
        node: node.as_ref().map(|n| n.to_string()),
        ok: res.is_ok(),
        message: match &res {
            Ok(m) => m.clone(),
            Err(e) => e.to_string(),
        },
    };
    tracing::info!(action, node = ?ev.node, ok = ev.ok, message = %ev.message, "dashboard action");
    s.events().action(ev.clone());
    match res {
        Ok(_) => Ok(Json(ev)),
        Err(e) => Err(e.into()),
    }
}

/// `POST /api/nodes/{id}/{action}`: `drain`, `cancel-drain`, `scrub`,
/// `forget`.
pub async fn node_action(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<ActionEvent>, ApiError> {
    check_admin(&s, &headers)?;
    let node = node_id(&id)?;
    let c = s.coord();
    let (name, res) = match action.as_str() {
        "drain" => (
            "drain",
            maintain::drain(c, node.clone(), false)
                .await
                .map(|_| format!("draining {node}: its copies move to other nodes")),
        ),
        "cancel-drain" => (
            "cancel-drain",
            maintain::drain(c, node.clone(), true)
                .await
                .map(|_| format!("drain of {node} cancelled")),
        ),
        "scrub" => (
            "scrub",
            maintain::scrub(c, Some(node.clone())).map(|_| format!("{node} scrubs now")),
        ),
        "forget" => (
            "forget",
            maintain::forget(c, node.clone())
                .await
                .map(|_| format!("{node} forgotten")),
        ),
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no node action {other:?} (drain, cancel-drain, scrub, forget)"),
            ))
        }
    };
    act(&s, name, Some(node), res).await
}

/// `POST /api/rebalance`: start rebalancing now.
pub async fn rebalance(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ActionEvent>, ApiError> {
    check_admin(&s, &headers)?;
    let res = maintain::rebalance(s.coord(), true)
        .map(|r| format!("rebalance {}", client::report::rebalance_state_str(r.state)));
    act(&s, "rebalance", None, res).await
}
