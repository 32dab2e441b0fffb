//! The web crate's error type, and how an API failure becomes a JSON
//! response with a fitting status code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--http {0} is not a loopback address: give --http-token-file or a cluster secret so strangers cannot read the cluster")]
    TokenRequired(String),
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An API failure: `{"error": message}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<coord::Error> for ApiError {
    fn from(e: coord::Error) -> Self {
        use protocol::ErrorKind as K;
        let status = match e.to_wire().kind {
            K::NoSuchFile | K::NoSuchChunk | K::NoSuchNode | K::NoSuchUpload => {
                StatusCode::NOT_FOUND
            }
            K::BadRequest | K::InvalidName => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}
