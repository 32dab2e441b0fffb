//! The data endpoint: files in and out of the cluster for the dashboard,
//! served by a client-side process (`dfs-sim data`), never by the
//! coordinator, which does not touch chunk bytes. It is a client of the
//! cluster like any other (the `client` crate's put and get, every chunk
//! verified by its SHA-256 on the way out), reachable from the page across
//! origins (CORS), and guarded by the same token as the dashboard.
//!
//! - `PUT /files/{name}?scheme=&force=`: the body becomes the file.
//! - `GET /files/{name}`: the file's bytes.
//!
//! Both stage the bytes in a temporary file (removed on every path), at
//! most [`DataConfig::max_bytes`]: the page is for files a person drags in,
//! not for bulk loads (those use `dfs-sim put` or the S3 gateway).

use crate::auth::{self, Token};
use crate::error::{ApiError, Result};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use client::ClientConfig;
use futures_util::StreamExt;
use protocol::FileName;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// How the data endpoint is served.
#[derive(Clone)]
pub struct DataConfig {
    /// Required on every request when set, as on the dashboard.
    pub token: Option<String>,
    /// Largest file taken in or handed out.
    pub max_bytes: u64,
    /// `Access-Control-Allow-Origin`: the dashboard's origin, or `*`.
    pub allow_origin: String,
    /// Where files are staged.
    pub tmp_dir: PathBuf,
}

/// Default [`DataConfig::max_bytes`].
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

#[derive(Clone)]
struct DataState {
    client: Arc<ClientConfig>,
    cfg: Arc<DataConfig>,
}

/// Serves the data endpoint until `shutdown` completes.
pub async fn serve_data(
    listener: TcpListener,
    client: ClientConfig,
    cfg: DataConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    crate::WebConfig {
        token: cfg.token.clone(),
        ..Default::default()
    }
    .check(&listener.local_addr()?)?;
    let origin = cfg.allow_origin.clone();
    let token = Token(cfg.token.clone().map(Arc::from));
    let state = DataState {
        client: Arc::new(client),
        cfg: Arc::new(cfg),
    };
    let app = Router::new()
        .route("/files/{*name}", get(download).put(upload))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(token, auth::require))
        // Outermost: a preflight carries no token and is answered here.
        .layer(axum::middleware::from_fn_with_state(origin, cors));
    tracing::info!(listen = %listener.local_addr()?, "data endpoint serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn cors(State(origin): State<String>, req: Request, next: Next) -> Response {
    let allow = HeaderValue::from_str(&origin).unwrap_or(HeaderValue::from_static("*"));
    let mut resp = if req.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, PUT, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    resp
}

/// A staged file, removed when dropped.
struct Staged(PathBuf);

static STAGED: AtomicU64 = AtomicU64::new(0);

impl Staged {
    fn new(dir: &std::path::Path) -> Staged {
        let n = STAGED.fetch_add(1, Ordering::Relaxed);
        Staged(dir.join(format!("dfs-data-{}-{n}.tmp", std::process::id())))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn file_name(s: &str) -> Result<FileName, ApiError> {
    FileName::new(s).map_err(|e| ApiError::bad_request(format!("invalid name: {e}")))
}

fn client_error(e: client::Error) -> ApiError {
    use protocol::ErrorKind as K;
    let status = match e.coord_kind() {
        Some(K::NoSuchFile) => StatusCode::NOT_FOUND,
        Some(K::FileExists) => StatusCode::CONFLICT,
        Some(K::BadRequest | K::InvalidName) => StatusCode::BAD_REQUEST,
        Some(K::Forbidden) => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(status, e.to_string())
}

fn too_big(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("larger than this endpoint's limit of {max} bytes; use dfs-sim put/get or the S3 gateway"),
    )
}

#[derive(Deserialize)]
struct PutQuery {
    scheme: Option<String>,
    #[serde(default)]
    force: bool,
}

#[derive(Serialize)]
struct Stored {
    name: String,
    size: u64,
    chunks: u64,
    scheme: String,
    replication: u32,
}

async fn upload(
    State(s): State<DataState>,
    Path(name): Path<String>,
    Query(q): Query<PutQuery>,
    body: Body,
) -> Result<Json<Stored>, ApiError> {
    let name = file_name(&name)?;
    let mut cfg = (*s.client).clone();
    if let Some(sc) = q.scheme.as_deref().filter(|s| !s.is_empty()) {
        cfg.scheme = Some(
            sc.parse::<protocol::Scheme>()
                .map_err(|e| ApiError::bad_request(format!("scheme: {e}")))?,
        );
    }
    let staged = Staged::new(&s.cfg.tmp_dir);
    let io = |e: std::io::Error| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("staging: {e}"))
    };
    let mut f = std::fs::File::create(&staged.0).map_err(io)?;
    let mut stream = body.into_data_stream();
    let mut len = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
        len += piece.len() as u64;
        if len > s.cfg.max_bytes {
            return Err(too_big(s.cfg.max_bytes));
        }
        f.write_all(&piece).map_err(io)?;
    }
    drop(f);
    let sum = client::put::put(&cfg, &staged.0, name, q.force, Arc::new(|_| {}))
        .await
        .map_err(client_error)?;
    tracing::info!(name = %sum.name, size = sum.size, "stored from the dashboard");
    Ok(Json(Stored {
        name: sum.name.to_string(),
        size: sum.size,
        chunks: sum.chunks,
        scheme: sum.scheme.to_string(),
        replication: sum.replication,
    }))
}

async fn download(
    State(s): State<DataState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = file_name(&name)?;
    let mut coord = client::CoordClient::connect(&s.client)
        .await
        .map_err(client_error)?;
    let info = coord.lookup(name.clone()).await.map_err(client_error)?;
    if info.size > s.cfg.max_bytes {
        return Err(too_big(s.cfg.max_bytes));
    }
    let staged = Staged::new(&s.cfg.tmp_dir);
    client::get::get(
        &s.client,
        name,
        client::get::Output::File(staged.0.clone()),
        Arc::new(|_| {}),
    )
    .await
    .map_err(client_error)?;
    let bytes = tokio::fs::read(&staged.0)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("staging: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response())
}
