//! What happens when, drawn from the seed: each client's operations and the
//! fault schedule. Every draw comes from a ChaCha stream derived from the
//! seed and never depends on outcomes or timing, so the same seed replays
//! the same sequence of operations (names, sizes, contents) and of faults
//! (kinds, targets, durations); only how they interleave in time varies.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// The seeded generator of one stream (a client, the faults).
pub fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Stream numbers: 0 for faults, 1.. for clients.
pub const FAULT_STREAM: u64 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL a node, restart it after a while.
    NodeKill,
    /// SIGSTOP a node (hung, not dead), SIGCONT after a while.
    NodePause,
    /// SIGKILL the coordinator, restart it after a while.
    CoordKill,
    /// Flip bytes in chunk files of a node.
    DiskFlip,
    /// Truncate chunk files of a node.
    DiskTruncate,
    /// Delete chunk files of a node.
    DiskDelete,
    /// Restart a node with a reserve larger than its disk: every new copy
    /// is refused as if the disk were full.
    DiskFull,
    /// Cut a node's session with the coordinator (through the proxy chaos
    /// puts between them).
    Partition,
    /// A coordinator group: SIGKILL the leader, restart it after a while.
    LeaderKill,
    /// A coordinator group: SIGSTOP the leader (hung), SIGCONT later.
    LeaderPause,
    /// A coordinator group: kill a follower, wipe its data directory and
    /// restart it (it must rejoin by snapshot).
    FollowerWipe,
}

impl FaultKind {
    /// The faults of a coordinator group, drawn only when there is one.
    pub const GROUP: [FaultKind; 3] = [
        FaultKind::LeaderKill,
        FaultKind::LeaderPause,
        FaultKind::FollowerWipe,
    ];

    pub const ALL: [FaultKind; 11] = [
        FaultKind::NodeKill,
        FaultKind::NodePause,
        FaultKind::CoordKill,
        FaultKind::DiskFlip,
        FaultKind::DiskTruncate,
        FaultKind::DiskDelete,
        FaultKind::DiskFull,
        FaultKind::Partition,
        FaultKind::LeaderKill,
        FaultKind::LeaderPause,
        FaultKind::FollowerWipe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::NodeKill => "node-kill",
            FaultKind::NodePause => "node-pause",
            FaultKind::CoordKill => "coord-kill",
            FaultKind::DiskFlip => "disk-flip",
            FaultKind::DiskTruncate => "disk-truncate",
            FaultKind::DiskDelete => "disk-delete",
            FaultKind::DiskFull => "disk-full",
            FaultKind::Partition => "partition",
            FaultKind::LeaderKill => "leader-kill",
            FaultKind::LeaderPause => "leader-pause",
            FaultKind::FollowerWipe => "follower-wipe",
        }
    }

    pub fn parse(s: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether it takes a node out of the scheme's tolerance budget.
    pub fn impairs_node(self) -> bool {
        !matches!(
            self,
            FaultKind::CoordKill
                | FaultKind::LeaderKill
                | FaultKind::LeaderPause
                | FaultKind::FollowerWipe
        )
    }
}

/// One entry of the fault schedule.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub seq: u64,
    /// Pause before it, after the previous one was injected.
    pub after: Duration,
    pub kind: FaultKind,
    /// Node index (ignored for the coordinator).
    pub node: usize,
    /// How long it lasts before it is undone.
    pub hold: Duration,
    /// For disk faults: which files (indexes into the sorted listing) and
    /// where in them.
    pub picks: Vec<u64>,
}

/// The fault schedule, one at a time.
pub struct FaultSchedule {
    rng: ChaCha8Rng,
    kinds: Vec<FaultKind>,
    nodes: usize,
    seq: u64,
}

impl FaultSchedule {
    pub fn new(seed: u64, kinds: Vec<FaultKind>, nodes: usize) -> FaultSchedule {
        FaultSchedule {
            rng: stream(seed, FAULT_STREAM),
            kinds,
            nodes,
            seq: 0,
        }
    }

    pub fn next_fault(&mut self) -> Option<FaultPlan> {
        if self.kinds.is_empty() || self.nodes == 0 {
            return None;
        }
        let r = &mut self.rng;
        let after = Duration::from_millis(r.gen_range(300..2000));
        let kind = self.kinds[r.gen_range(0..self.kinds.len())];
        let node = r.gen_range(0..self.nodes);
        let hold = Duration::from_millis(match kind {
            FaultKind::CoordKill => r.gen_range(100..1500),
            FaultKind::DiskFlip | FaultKind::DiskTruncate | FaultKind::DiskDelete => {
                r.gen_range(200..2000)
            }
            _ => r.gen_range(500..4000),
        });
        let picks = (0..r.gen_range(1..=3)).map(|_| r.gen()).collect();
        self.seq += 1;
        Some(FaultPlan {
            seq: self.seq,
            after,
            kind,
            node,
            hold,
            picks,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    Put,
    Overwrite,
    Get,
    Rm,
    Ls,
    Stat,
}

impl OpKind {
    pub const ALL: [OpKind; 6] = [
        OpKind::Put,
        OpKind::Overwrite,
        OpKind::Get,
        OpKind::Rm,
        OpKind::Ls,
        OpKind::Stat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Overwrite => "overwrite",
            OpKind::Get => "get",
            OpKind::Rm => "rm",
            OpKind::Ls => "ls",
            OpKind::Stat => "stat",
        }
    }
}

/// One operation of a client's schedule.
#[derive(Debug, Clone)]
pub struct OpPlan {
    pub seq: u64,
    pub kind: OpKind,
    /// Index into the client's names.
    pub name: usize,
    /// For puts: size and the seed of the content.
    pub size: u64,
    pub content_seed: u64,
}

/// A client's operation schedule.
pub struct OpSchedule {
    rng: ChaCha8Rng,
    names: usize,
    chunk_size: u64,
    seq: u64,
}

impl OpSchedule {
    pub fn new(seed: u64, client: usize, names: usize, chunk_size: u64) -> OpSchedule {
        OpSchedule {
            rng: stream(seed, 1 + client as u64),
            names,
            chunk_size: chunk_size.max(1),
            seq: 0,
        }
    }

    pub fn next_op(&mut self) -> OpPlan {
        let r = &mut self.rng;
        let kind = match r.gen_range(0..100) {
            0..=14 => OpKind::Put,
            15..=39 => OpKind::Overwrite,
            40..=69 => OpKind::Get,
            70..=79 => OpKind::Rm,
            80..=87 => OpKind::Ls,
            _ => OpKind::Stat,
        };
        let name = r.gen_range(0..self.names);
        let c = self.chunk_size;
        // Empty files, small ones, sizes around chunk boundaries, and files
        // of several chunks (so that stripes and their parity are used).
        let size = match r.gen_range(0..10) {
            0 => 0,
            1..=3 => r.gen_range(1..4096),
            4 | 5 => {
                let k = r.gen_range(1..=3);
                (k * c).saturating_add_signed(r.gen_range(-1..=1))
            }
            _ => r.gen_range(c..=6 * c),
        };
        let content_seed = r.gen();
        self.seq += 1;
        OpPlan {
            seq: self.seq,
            kind,
            name,
            size,
            content_seed,
        }
    }
}

/// The bytes of a put: half of them compressible (so LZ4 is used), half
/// random (so it is not).
pub fn content(seed: u64, size: u64) -> Vec<u8> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; size as usize];
    if seed.is_multiple_of(2) {
        r.fill(&mut v[..]);
    } else {
        let word: [u8; 16] = r.gen();
        for (i, b) in v.iter_mut().enumerate() {
            *b = word[i % 16] ^ ((i / 4096) as u8);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule() {
        let kinds = FaultKind::ALL.to_vec();
        let mut a = FaultSchedule::new(42, kinds.clone(), 6);
        let mut b = FaultSchedule::new(42, kinds.clone(), 6);
        let mut c = FaultSchedule::new(43, kinds, 6);
        let fa: Vec<String> = (0..50).map(|_| format!("{:?}", a.next_fault())).collect();
        let fb: Vec<String> = (0..50).map(|_| format!("{:?}", b.next_fault())).collect();
        let fc: Vec<String> = (0..50).map(|_| format!("{:?}", c.next_fault())).collect();
        assert_eq!(fa, fb);
        assert_ne!(fa, fc);
        let mut x = OpSchedule::new(42, 1, 8, 65536);
        let mut y = OpSchedule::new(42, 1, 8, 65536);
        let mut z = OpSchedule::new(42, 2, 8, 65536);
        let ox: Vec<String> = (0..100).map(|_| format!("{:?}", x.next_op())).collect();
        let oy: Vec<String> = (0..100).map(|_| format!("{:?}", y.next_op())).collect();
        let oz: Vec<String> = (0..100).map(|_| format!("{:?}", z.next_op())).collect();
        assert_eq!(ox, oy);
        assert_ne!(ox, oz);
        assert_eq!(content(7, 1000), content(7, 1000));
        assert_eq!(content(8, 100_000).len(), 100_000);
    }
}
