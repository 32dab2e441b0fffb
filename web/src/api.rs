//! The routes. Each handler calls one of the coordinator's request handlers
//! (`coord::cmd`) and serializes a `client::report` document: the same code
//! path and the same JSON as the CLI.

use crate::actions;
use crate::assets;
use crate::auth::{self, Token};
use crate::error::ApiError;
use crate::events::Events;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use client::report::{FsckJson, IncidentDoc, StatReport, StatusReport};
use coord::cmd;
use metrics_exporter_prometheus::PrometheusHandle;
use protocol::data_client::NodePool;
use protocol::handshake::Role;
use protocol::{FileName, NodeId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Default page of the file list.
const DEFAULT_LIMIT: usize = 100;
/// Largest page the page may ask for.
const MAX_LIMIT: usize = 1000;

pub fn router(coord: Arc<coord::Coord>, prom: PrometheusHandle, cfg: &crate::WebConfig) -> Router {
    let pool = Arc::new(NodePool::new(
        Role::Coord,
        coord
            .config()
            .secret
            .clone()
            .map(protocol::handshake::Credential::Internal),
    ));
    let events = Events::start(coord.clone());
    let state = AppState {
        coord,
        prom,
        pool,
        admin: cfg.admin_token.clone().map(Arc::from),
        events,
        data_url: cfg.data_url.clone().map(Arc::from),
    };
    let token = Token(cfg.token.clone().map(Arc::from));
    let guarded = Router::new()
        .route("/", get(assets::index))
        .route("/api/status", get(status))
        .route("/api/files", get(files))
        .route("/api/files/{*name}", get(stat))
        .route("/api/fsck", get(fsck))
        .route("/api/preview", get(preview))
        .route("/api/incidents", get(incidents))
        .route("/api/coordinators", get(coordinators))
        .route("/api/incidents/{id}", get(incident))
        .route("/api/events", get(event_stream))
        .route("/api/ui", get(ui))
        .route("/api/nodes/{id}/{action}", post(actions::node_action))
        .route("/api/rebalance", post(actions::rebalance))
        .route("/metrics", get(prometheus))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(token, auth::require));
    // Scripts and styles hold no cluster data: the browser fetches them
    // without the token the page passes to the API.
    Router::new()
        .route("/app.js", get(assets::script))
        .route("/style.css", get(assets::style))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .merge(guarded)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such page")
}

async fn status(State(s): State<AppState>) -> Json<StatusReport> {
    Json(StatusReport::from(&cmd::status::status(&s.coord)))
}

fn file_name(s: &str) -> Result<FileName, ApiError> {
    FileName::new(s).map_err(|e| ApiError::bad_request(format!("invalid name: {e}")))
}

fn node_ids(s: Option<&str>) -> Result<Vec<NodeId>, ApiError> {
    s.unwrap_or("")
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| NodeId::new(n).map_err(|e| ApiError::bad_request(format!("invalid node: {e}"))))
        .collect()
}

async fn stat(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<StatReport>, ApiError> {
    let f = cmd::read::lookup(&s.coord, &file_name(&name)?)?;
    Ok(Json(StatReport::from(&f)))
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
    limit: Option<usize>,
    what_if: Option<String>,
}

/// One page of the file list, with each file's health (as if the `what_if`
/// nodes had failed, when given).
#[derive(Serialize)]
struct FilesPage {
    what_if: Vec<String>,
    files: Vec<PageEntry>,
    /// Pass as `after` for the next page; absent on the last one.
    next_after: Option<String>,
}

#[derive(Serialize)]
struct PageEntry {
    name: String,
    size: u64,
    chunks: u64,
    created_ms: u64,
    health: &'static str,
    /// Chunks (parity included) below their target.
    below_target: usize,
}

/// `GET /api/files?prefix=&after=&limit=[&what_if=]`: costs one page,
/// whatever the size of the namespace.
async fn files(
    State(s): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<FilesPage>, ApiError> {
    let after = q
        .after
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(file_name)
        .transpose()?;
    let what_if = node_ids(q.what_if.as_deref())?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT) as u32;
    let list = |after: Option<&str>| cmd::read::list_page(&s.coord, &q.prefix, after, limit);
    let page = list(after.as_ref().map(|a| a.as_str()));
    // A page may stop short of `limit` (replies are bounded in bytes too):
    // whether more follow is asked, not guessed from the length.
    let more = page.last().is_some_and(|l| {
        !cmd::read::list_page(&s.coord, &q.prefix, Some(l.name.as_str()), 1).is_empty()
    });
    let names: Vec<FileName> = page.iter().map(|f| f.name.clone()).collect();
    // The files of this page only: a name removed since the listing is
    // simply skipped rather than failing the page.
    let health = if names.is_empty() {
        FsckJson::from(&protocol::FsckReport {
            what_if: what_if.clone(),
            files: vec![],
        })
    } else {
        match cmd::fsck::fsck(&s.coord, names.clone(), what_if.clone()) {
            Ok(r) => FsckJson::from(&r),
            Err(coord::Error::NoSuchFile(_)) => {
                let names = list(after.as_ref().map(|a| a.as_str()))
                    .into_iter()
                    .map(|f| f.name)
                    .collect();
                FsckJson::from(&cmd::fsck::fsck(&s.coord, names, what_if.clone())?)
            }
            Err(e) => return Err(e.into()),
        }
    };
    let files = page
        .iter()
        .filter_map(|f| {
            let h = health.files.iter().find(|h| h.name == f.name.as_str())?;
            Some(PageEntry {
                name: f.name.to_string(),
                size: f.size,
                chunks: f.chunks,
                created_ms: f.created_ms,
                health: h.health,
                below_target: h.chunks.len(),
            })
        })
        .collect();
    Ok(Json(FilesPage {
        what_if: health.what_if,
        next_after: more
            .then(|| page.last().map(|f| f.name.to_string()))
            .flatten(),
        files,
    }))
}

#[derive(Deserialize)]
struct FsckQuery {
    what_if: Option<String>,
}

/// `GET /api/fsck?what_if=n1,n2`: the document `fsck --json --what-if`
/// prints, from the same handler.
async fn fsck(
    State(s): State<AppState>,
    Query(q): Query<FsckQuery>,
) -> Result<Json<FsckJson>, ApiError> {
    let what_if = node_ids(q.what_if.as_deref())?;
    let r = cmd::fsck::fsck(&s.coord, vec![], what_if)?;
    Ok(Json(FsckJson::from(&r)))
}

#[derive(Deserialize)]
struct PreviewQuery {
    file: String,
    chunk: String,
}

#[derive(Serialize)]
struct Preview {
    file: String,
    chunk: String,
    /// The node whose copy was read.
    node: String,
    raw_len: u64,
    /// Bytes shown: at most 64 KiB from offset 0.
    len: usize,
    /// How the bytes were checked.
    verified: &'static str,
    hex: String,
}

/// `GET /api/preview?file=&chunk=`: the first 64 KiB of a chunk, read from
/// the first live copy that verifies.
async fn preview(
    State(s): State<AppState>,
    Query(q): Query<PreviewQuery>,
) -> Result<Json<Preview>, ApiError> {
    let f = cmd::read::lookup(&s.coord, &file_name(&q.file)?)?;
    let c = f
        .stripes
        .iter()
        .flat_map(|s| s.data.iter().chain(s.parity.iter()))
        .find(|c| c.header.id.to_hex() == q.chunk)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{} has no chunk {}", q.file, q.chunk),
            )
        })?;
    let mut errors = Vec::new();
    for loc in c.locations.iter().filter(|l| l.alive) {
        match s
            .pool
            .preview(&loc.node.addr, &c.header, protocol::PREVIEW_MAX)
            .await
        {
            Ok(bytes) => {
                let whole = bytes.len() as u64 == c.header.raw_len;
                return Ok(Json(Preview {
                    file: q.file,
                    chunk: q.chunk,
                    node: loc.node.id.to_string(),
                    raw_len: c.header.raw_len,
                    len: bytes.len(),
                    verified: if whole {
                        "SHA-256 of the whole chunk checked here and by the node"
                    } else {
                        "whole copy SHA-256-verified by the node; CRC-32 of these bytes checked here"
                    },
                    hex: hex::encode(&bytes),
                }));
            }
            Err(e) => errors.push(format!("{}: {e}", loc.node.id)),
        }
    }
    Err(ApiError::new(
        StatusCode::BAD_GATEWAY,
        if errors.is_empty() {
            "no live copy of this chunk".to_string()
        } else {
            format!("no live copy could be read ({})", errors.join("; "))
        },
    ))
}

async fn prometheus(State(s): State<AppState>) -> axum::response::Response {
    crate::metrics::refresh_cluster_gauges(&s.coord);
    crate::metrics::text_response(s.prom.render())
}

/// `GET /api/incidents`: `dfs-sim incidents --json`, newest first.
async fn incidents(State(s): State<AppState>) -> Json<Vec<IncidentDoc>> {
    Json(
        cmd::incidents::list(&s.coord, None)
            .iter()
            .map(IncidentDoc::from)
            .collect(),
    )
}

/// `GET /api/coordinators`: the coordinator group as this member sees it,
/// the document `dfs-sim coordinators --json` prints; `null` for a single
/// coordinator.
async fn coordinators(State(s): State<AppState>) -> Json<Option<protocol::GroupStatus>> {
    Json(s.coord.group().map(|g| g.status()))
}

/// `GET /api/incidents/{id}`: `dfs-sim incidents ID --json`.
async fn incident(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<IncidentDoc>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid incident id {id:?}")))?;
    cmd::incidents::list(&s.coord, Some(id))
        .first()
        .map(|i| Json(IncidentDoc::from(i)))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no incident {id}")))
}

/// `GET /api/events`: server-sent events (see [`crate::events`]).
async fn event_stream(State(s): State<AppState>) -> impl axum::response::IntoResponse {
    s.events.stream()
}

/// What the page needs to know about this server beyond the cluster.
#[derive(Serialize)]
struct Ui {
    /// Where files go in and out (`dfs-sim data`), if configured.
    data_url: Option<String>,
    /// Whether actions can be enabled (an admin token is configured).
    actions: bool,
}

/// `GET /api/ui`.
async fn ui(State(s): State<AppState>) -> Json<Ui> {
    Json(Ui {
        data_url: s.data_url.as_deref().map(str::to_string),
        actions: s.admin.is_some(),
    })
}
