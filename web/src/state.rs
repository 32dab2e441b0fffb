//! What every route handler reaches: the coordinator, the metrics
//! recorder, the node pool of the hex preview, the admin token and the
//! live event stream.

use crate::events::Events;
use metrics_exporter_prometheus::PrometheusHandle;
use protocol::data_client::NodePool;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub(crate) coord: Arc<coord::Coord>,
    pub(crate) prom: PrometheusHandle,
    /// Connections to nodes for the hex preview.
    pub(crate) pool: Arc<NodePool>,
    pub(crate) admin: Option<Arc<str>>,
    pub(crate) events: Events,
    pub(crate) data_url: Option<Arc<str>>,
}

impl AppState {
    pub fn coord(&self) -> &coord::Coord {
        &self.coord
    }

    pub fn admin_token(&self) -> Option<&str> {
        self.admin.as_deref()
    }

    pub fn events(&self) -> &Events {
        &self.events
    }
}
