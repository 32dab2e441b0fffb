//! `Incidents`: the incident records (see [`crate::incidents`]), newest
//! first, or the one asked for. A read: any client may ask, like `Status`.

use crate::state::Coord;
use protocol::Incident;

pub fn list(coord: &Coord, id: Option<u64>) -> Vec<Incident> {
    coord.lock().parts().repairs.incidents(id)
}
