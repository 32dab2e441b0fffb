//! `Fsck`: every file's health, the chunks below target and where their
//! repair stands; optionally as if some nodes had failed (`--what-if`).

use crate::error::{Error, Result};
use crate::state::Coord;
use protocol::health::{file_health, StripeCopies};
use protocol::{ChunkHealth, FileHealth, FileName, FsckReport, NodeId, RepairState};
use std::collections::HashSet;
use std::time::Instant;

pub fn fsck(coord: &Coord, names: Vec<FileName>, what_if: Vec<NodeId>) -> Result<FsckReport> {
    let st = coord.lock();
    let now = Instant::now();
    let gone: HashSet<&NodeId> = what_if.iter().collect();
    for n in &what_if {
        if !st.members.members.contains_key(n) {
            return Err(Error::BadRequest(format!("no node {n} in this cluster")));
        }
    }
    let live = |n: &NodeId| !gone.contains(n) && st.members.is_alive(n, now, &coord.config);
    let selected: Vec<&FileName> = if names.is_empty() {
        st.catalog.files.keys().collect()
    } else {
        for n in &names {
            if !st.catalog.files.contains_key(n) {
                return Err(Error::NoSuchFile(n.clone()));
            }
        }
        names.iter().collect()
    };
    let mut files = Vec::new();
    for name in selected {
        let f = &st.catalog.files[name];
        let code = f.code();
        let mut stripes = Vec::new();
        let mut chunks = Vec::new();
        let mut index = 0u64;
        for (si, s) in f.stripes.iter().enumerate() {
            let count =
                |c: &crate::catalog::ChunkEntry| c.nodes.iter().filter(|n| live(n)).count() as u32;
            stripes.push(StripeCopies {
                data: s.data.iter().map(count).collect(),
                parity: s.parity.iter().map(count).collect(),
            });
            let all = s
                .data
                .iter()
                .map(|c| (c, false))
                .chain(s.parity.iter().map(|c| (c, true)));
            for (c, parity) in all {
                let n = count(c);
                let target = f.target(parity);
                if n < target {
                    let repair = if !what_if.is_empty() {
                        RepairState::Idle
                    } else if st.repairs.in_flight.contains_key(&c.header.id) {
                        RepairState::Running
                    } else if st.repairs.stuck.contains(&c.header.id) {
                        RepairState::Idle
                    } else {
                        RepairState::Queued
                    };
                    chunks.push(ChunkHealth {
                        id: c.header.id,
                        stripe: si as u32,
                        index: (!parity).then_some(index),
                        live: n,
                        target,
                        repair,
                    });
                }
                if !parity {
                    index += 1;
                }
            }
        }
        files.push(FileHealth {
            name: name.clone(),
            size: f.size,
            health: file_health(&code, &stripes, f.replication),
            chunks,
        });
    }
    Ok(FsckReport { what_if, files })
}
