//! Every message of the cluster. Requests are enums with one variant per
//! operation; servers answer each with `Result<Response, WireError>`.
//!
//! Two connections exist: *data* connections (client or node to node, which
//! carry chunk bytes) and *control* connections (anyone to the coordinator,
//! which never carry chunk bytes). A node and the coordinator also keep one
//! long-lived *session*, opened by either side, over which heartbeats and
//! commands flow.

pub use crate::attrs::{check_attrs, Attrs, MAX_ATTRS_BYTES};
use crate::ids::{ChunkId, ClusterId, FileName, NodeId};
use crate::tag::OwnerTag;
use crate::token::BlockToken;
pub use codes::Scheme;
use serde::{Deserialize, Serialize};

/// How the stored bytes of a chunk encode its raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// Stored as is: chosen when LZ4 would not make the chunk smaller, so
    /// incompressible data costs no decompression on read.
    Raw,
    /// LZ4 block format (lz4_flex), raw length known from the header.
    Lz4,
}

/// Everything needed to store and verify one chunk (data or parity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    pub id: ChunkId,
    /// Length of the chunk before compression.
    pub raw_len: u64,
    /// SHA-256 of the raw bytes: the end-to-end check a reader makes.
    pub raw_sha256: [u8; 32],
    pub codec: Codec,
    /// Length of the bytes on the wire and on disk.
    pub stored_len: u64,
    /// CRC-32 of the stored bytes: cheap enough for a node to check on every
    /// receive and every read without decompressing.
    pub stored_crc: u32,
}

// ---------------------------------------------------------------- node side

/// Requests a node serves on its data port.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NodeRequest {
    /// Store a chunk: followed by data frames totalling `stored_len` bytes.
    /// Answered with `NodeResponse::Stored` once the chunk is durable. A
    /// client needs a write token for the chunk (secured clusters); an id the
    /// node already holds is never replaced.
    Put {
        header: ChunkHeader,
        token: Option<BlockToken>,
    },
    /// Read a chunk: answered with `NodeResponse::Chunk(header)`, then data
    /// frames, then `NodeResponse::End` carrying the node's own verdict. A
    /// client needs a read token (secured clusters).
    Get {
        id: ChunkId,
        token: Option<BlockToken>,
    },
    /// Delete chunks; only the coordinator may (it normally uses the
    /// session); missing ids are not errors.
    Delete(Vec<ChunkId>),
    /// Liveness and usage probe.
    Ping,
    /// The coordinator attaches: this connection becomes the session.
    Attach,
    /// The first `max_len` raw bytes of a chunk (at most [`PREVIEW_MAX`]),
    /// after the node verified the whole copy (CRC, decompression,
    /// SHA-256). The dashboard's hex view: the one way chunk bytes reach the
    /// coordinator, and bounded so it can never become a data path.
    Preview { id: ChunkId, max_len: u32 },
    /// Coordinator only (like `Delete` and `Attach`): make a copy of each
    /// held chunk `from` under the new id `to`, on this node's own disk (an
    /// in-kernel copy, a reflink where the file system shares extents). The
    /// source's CRC is checked, the new copy is made durable like a put and
    /// never replaces an id already present. At most [`MAX_CLONE_PAIRS`]
    /// pairs. Answered with `Cloned`. Used by `CopyFile`: copying a file
    /// inside the cluster moves no chunk bytes over the network.
    Clone { pairs: Vec<(ChunkId, ChunkId)> },
    /// `Put` with the chunk's owner tag, kept in the chunk file's header.
    /// A client's write token must be signed over the tag's digest
    /// ([`crate::tag::OwnerTag::digest`]): a grant for one chunk cannot
    /// store it under another file's tag.
    PutTagged {
        header: ChunkHeader,
        token: Option<BlockToken>,
        tag: Box<crate::tag::OwnerTag>,
    },
    /// Coordinator only: one page of the owner tags of the chunks held,
    /// in chunk id order, strictly after `after`, at most `limit` (capped
    /// at [`crate::tag::MAX_TAG_PAGE`] and by bytes). Answered with `Tags`.
    ListTags { after: Option<ChunkId>, limit: u32 },
    /// Coordinator only: give held chunks a new owner tag (a file made by
    /// `Concat`, a copy, attributes known once a put is committed, chunks
    /// written before tags). At most [`crate::tag::MAX_RETAG`]. Answered
    /// with `Retagged`.
    Retag {
        tags: Vec<(ChunkId, crate::tag::OwnerTag)>,
        /// Leave chunks that already have a tag as they are (`dfs-sim
        /// retag`: only chunks written before tags get one).
        only_untagged: bool,
    },
    /// The owner tag of a held chunk (a node repairing a copy carries its
    /// source's tag over). Answered with `Tag`. Needs a read token like
    /// `Get`.
    GetTag {
        id: ChunkId,
        token: Option<BlockToken>,
    },
    /// Coordinator only: decode member `rebuild.member` (chunk `id`,
    /// `raw_len` raw bytes) from the members `rebuild` lists, exactly as a
    /// repair would, and answer with the header it encodes to (`Header`),
    /// storing nothing. A catalog rebuilt from the nodes learns so the
    /// header of a member none of whose copies answered, so that repair can
    /// restore it.
    Reconstruct {
        id: ChunkId,
        raw_len: u64,
        rebuild: Rebuild,
    },
}

/// Most chunk pairs one `NodeRequest::Clone` carries.
pub const MAX_CLONE_PAIRS: usize = 4096;

/// Largest chunk preview a node sends (64 KiB).
pub const PREVIEW_MAX: u32 = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NodeResponse {
    Stored {
        id: ChunkId,
    },
    Chunk(ChunkHeader),
    /// End of a chunk stream; `ok == false` means the node found the stored
    /// bytes corrupt while sending them and the reader must discard them.
    End {
        ok: bool,
    },
    Deleted {
        count: u64,
    },
    Pong(NodeStats),
    /// Answer to `Preview`: the chunk's header and the first bytes of its
    /// raw (decompressed) content, with their CRC-32 so the receiver can
    /// check the transfer.
    Preview {
        header: ChunkHeader,
        bytes: Vec<u8>,
        crc: u32,
    },
    /// Answer to `Clone`, one entry per pair in order: the new id and `None`
    /// once its copy is durable, or why it could not be made.
    Cloned(Vec<(ChunkId, Option<String>)>),
    /// Answer to `ListTags`. `next` is where the following page starts
    /// (`None`: the listing is over). The node's cluster and the newest
    /// catalog sequence it has seen come with every page.
    Tags {
        node: NodeId,
        cluster: Option<ClusterId>,
        seq_seen: u64,
        entries: Vec<TagEntry>,
        next: Option<ChunkId>,
        /// The name records of empty files (on the first page only, at
        /// most [`crate::tag::MAX_NAME_RECORDS`]).
        names: Vec<crate::tag::OwnerTag>,
    },
    /// Answer to `Retag`, one entry per chunk in order: `None` once the new
    /// tag is durable, or why not.
    Retagged(Vec<(ChunkId, Option<String>)>),
    /// Answer to `GetTag`.
    Tag(Option<Box<crate::tag::OwnerTag>>),
    /// Answer to `Reconstruct`.
    Header(ChunkHeader),
}

/// What a node reports about itself with every heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    pub chunks: u64,
    /// Stored bytes of all chunks.
    pub bytes: u64,
    /// Free bytes on the node's file system, when known.
    pub free_bytes: Option<u64>,
    /// Completed full scrub passes since the node started.
    pub scrub_passes: u64,
    /// Whether a scrub pass is running now.
    pub scrub_running: bool,
    /// Copies found corrupt (by scrub or on read) since the node started.
    pub corrupt_found: u64,
    /// Copies set aside because the catalog did not know them, waiting for
    /// their grace period (or to be reclaimed).
    pub orphans: u64,
    /// Corrupt copies kept in quarantine until their grace period ends.
    pub quarantined: u64,
    /// Free space the node keeps in reserve: placement counts only what is
    /// free beyond it.
    pub reserve_bytes: u64,
    /// Why the node's store failed (its data directory is gone, replaced
    /// or unwritable), if it did: the node refuses writes, and the
    /// coordinator counts it dead (its copies are lost) while it says so.
    pub failed: Option<String>,
}

impl NodeStats {
    /// Bytes this node can still take, known from its last report.
    pub fn usable_bytes(&self) -> Option<u64> {
        self.free_bytes
            .map(|f| f.saturating_sub(self.reserve_bytes))
    }
}

/// A copy a node holds outside its live chunks (an orphan set aside, or a
/// corrupt copy in quarantine), reported at registration so the
/// coordinator can reclaim it or, after the grace period, purge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAside {
    pub id: ChunkId,
    /// Seconds since it was set aside.
    pub age_s: u64,
    pub corrupt: bool,
}

/// First message of a session from the node's side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Register {
    pub node_id: NodeId,
    /// Where clients and other nodes reach this node's data port.
    pub addr: String,
    pub stats: NodeStats,
    /// Every chunk the node holds, so the coordinator can reconcile.
    pub inventory: Vec<ChunkId>,
    /// Failure domain (rack, enclosure): placement spreads a stripe's
    /// members over domains. Defaults to the node id.
    pub domain: String,
    /// A hot spare: takes no new writes until repair needs it.
    pub spare: bool,
    /// The cluster this node joined, once it has joined one.
    pub cluster: Option<ClusterId>,
    /// The highest catalog sequence number a coordinator of that cluster
    /// has shown this node: a catalog older than that (a stale copy of the
    /// coordinator's directory) must not be trusted to delete anything.
    pub seq_seen: u64,
    /// Orphans and quarantined copies held aside.
    pub set_aside: Vec<SetAside>,
    /// The identity of the node's data directory (32 hex digits, written
    /// at its first start), None from nodes before identities. A second
    /// node claiming a live node's id with another identity is refused.
    pub node_uuid: Option<String>,
}

/// The coordinator's answer to [`Register`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterAck {
    /// The node heartbeats this often; set by the coordinator so the whole
    /// cluster shares one value.
    pub heartbeat_ms: u64,
    /// The coordinator's cluster; a new node records it.
    pub cluster: ClusterId,
    /// The catalog's sequence number now.
    pub catalog_seq: u64,
    /// The coordinator's term as leader of its group (0 for a single
    /// coordinator). A node refuses a coordinator, and every order on a
    /// session, whose term is below the highest it has seen: a deposed
    /// leader can never delete or move anything.
    pub term: u64,
}

/// Messages on an established session, in either direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SessionMsg {
    /// Node -> coordinator, every `heartbeat_ms`.
    Heartbeat(NodeStats),
    /// Coordinator -> node: delete these copies (of removed or replaced
    /// files after their grace period, excess copies). Also removes a
    /// set-aside copy of the same id.
    Delete(Vec<ChunkId>),
    /// Coordinator -> node: the catalog does not know these copies; move
    /// them aside (never delete them yet).
    SetAside(Vec<ChunkId>),
    /// Coordinator -> node: these set-aside copies are needed after all;
    /// move them back.
    Reclaim(Vec<ChunkId>),
    /// Coordinator -> node: these set-aside copies passed their grace period
    /// and the catalog is known complete for them: delete them.
    Purge(Vec<ChunkId>),
    /// Node -> coordinator: a copy the coordinator counts on is missing (a
    /// verify order, scrub or read found no file).
    Missing(ChunkId),
    /// Coordinator -> node: make a verified copy of a chunk here, by
    /// fetching it from other nodes (data never passes the coordinator).
    Repair(RepairOrder),
    /// Node -> coordinator: outcome of a [`RepairOrder`].
    RepairDone {
        task: u64,
        chunk: ChunkId,
        /// `None` on success: the copy is stored durably and verified.
        error: Option<String>,
    },
    /// Node -> coordinator: this copy failed verification and was
    /// quarantined; count it as lost.
    Corrupt(ChunkId),
    /// Coordinator -> node: fully verify this copy now (a reader found it bad).
    Verify(ChunkId),
    /// Coordinator -> node: start a full scrub pass now.
    Scrub,
    /// Coordinator -> node, answering each heartbeat: the coordinator is
    /// alive and still leads in `term`. A node that hears nothing for a
    /// few heartbeats drops the session and looks for the leader (a paused
    /// coordinator's socket stays open).
    Beat { term: u64 },
    /// Coordinator -> node: the files of these chunks were removed or
    /// replaced (journaled); their copies are deleted after the delete
    /// grace. The node records a tombstone for each at once, so a rebuild
    /// from the nodes never brings a removed file back.
    Doom(Vec<ChunkId>),
    /// Coordinator -> node: keep this name record, the owner tag of an
    /// empty file (it has no chunk to carry one; a bucket marker of the S3
    /// gateway is one), for a rebuild from the nodes.
    KeepName(Box<crate::tag::OwnerTag>),
    /// Coordinator -> node: drop the name records of `name` up to
    /// generation `upto` (the file was removed or replaced).
    DropName { name: FileName, upto: u64 },
}

/// Instructions for producing one chunk copy on the receiving node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepairOrder {
    pub task: u64,
    /// The chunk to produce, exactly as the catalog knows it.
    pub header: ChunkHeader,
    pub source: RepairSource,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RepairSource {
    /// Copy the stored bytes from the first of these nodes that serves them.
    Copy(Vec<NodeAddr>),
    /// Decode the chunk from other members of its stripe (the read plan
    /// `codes::Code::read_plan` chose), cut it to the chunk's length, and
    /// check its SHA-256.
    Rebuild(Rebuild),
}

/// A rebuild: which member of which stripe, and the members to read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rebuild {
    pub scheme: Scheme,
    /// Data chunks the stripe really has (fewer than K for a short stripe).
    pub data: u32,
    /// Member index of the chunk to produce (data first, then parities).
    pub member: u32,
    /// Length of the stripe's parity members: the length decoding runs at.
    pub parity_len: u64,
    pub parts: Vec<RebuildPart>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RebuildPart {
    /// Member index within the stripe.
    pub member: u32,
    pub header: ChunkHeader,
    pub nodes: Vec<NodeAddr>,
}

// ---------------------------------------------------------- coordinator side

/// Requests the coordinator serves on its control port.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CoordRequest {
    /// A node opens its session (the node was started with `--coord`).
    Register(Register),
    /// Reserve chunk ids and placement for a file of `size` bytes.
    PlanPut {
        name: FileName,
        size: u64,
        force: bool,
        /// Overrides the cluster's default scheme for this file.
        scheme: Option<Scheme>,
        /// For a file smaller than one full stripe: spread it over the
        /// stripe's data chunks (chunks shorter than the cluster's chunk
        /// size, at least [`MIN_FIT_CHUNK`]) instead of one short stripe:
        /// an 8 MiB S3 part under `rs:6+3` costs 1.5x, not 4x, and its
        /// parity is not a copy of its only chunk. The plan's `chunk_size`
        /// says the length chosen.
        fit: bool,
    },
    /// Make a planned upload visible under its name; acknowledged only once
    /// durable.
    CommitPut(CommitPut),
    /// Give up a planned upload; its chunks become garbage.
    AbortPut {
        upload_id: u64,
    },
    /// A copy of a planned chunk could not be stored on `failed`: choose
    /// another node for it (answered with `Target`), so a put survives a
    /// node dying under it.
    ReplaceTarget {
        upload_id: u64,
        chunk: ChunkId,
        failed: NodeId,
    },
    Lookup {
        name: FileName,
    },
    List {
        prefix: String,
    },
    /// One page of `List`: names with `prefix` strictly after `after`, in
    /// name order, at most `limit` (capped at [`MAX_LIST_PAGE`]). Lets a
    /// caller walk any number of files in bounded replies.
    ListPage {
        prefix: String,
        after: Option<String>,
        limit: u32,
    },
    /// Atomically make `name` the concatenation of `parts` (existing files,
    /// in order): the new file takes over their stripes and chunks as they
    /// are, no bytes move, and the parts disappear. Used to complete an S3
    /// multipart upload without copying data.
    Concat {
        name: FileName,
        parts: Vec<FileName>,
        attrs: Attrs,
    },
    Remove {
        name: FileName,
    },
    Status,
    /// Health of the named files (all when empty), optionally as if the
    /// `what_if` nodes had failed.
    Fsck {
        names: Vec<FileName>,
        what_if: Vec<NodeId>,
    },
    /// Move every chunk off a node (or stop doing so with `cancel`).
    Drain {
        node: NodeId,
        cancel: bool,
    },
    /// Remove a stopped node that holds nothing (drained, or every copy
    /// re-protected elsewhere) from the cluster's records.
    Forget {
        node: NodeId,
    },
    /// Ask one node, or all, to scrub now.
    Scrub {
        node: Option<NodeId>,
    },
    /// A reader found this copy bad; the coordinator has the node verify it.
    ReportBad {
        chunk: ChunkId,
        node: NodeId,
        reason: String,
    },
    /// Operator: issue a client key (answered with `Key`).
    KeyCreate {
        name: String,
    },
    /// Operator: revoke a client key; connections using it are refused from
    /// now on.
    KeyRevoke {
        name: String,
    },
    /// Operator: names of the client keys in force.
    KeyList,
    /// Copy a file inside the cluster: every node holding a member of the
    /// source's stripes copies it locally under a new id, and `dst` is
    /// committed with the copies that succeeded (self-healing restores the
    /// rest). No chunk bytes cross the network. `range` (start, end) in
    /// bytes selects whole stripes only; a range that does not start and
    /// end on stripe boundaries (or the end of the file) is refused.
    /// `attrs`: the new file's attributes, or the source's when `None`.
    /// Answered with `Committed`.
    CopyFile {
        src: FileName,
        dst: FileName,
        range: Option<(u64, u64)>,
        attrs: Option<Attrs>,
        force: bool,
    },
    /// One page of a whole-namespace `Fsck`: files strictly after `after`,
    /// in name order, at most `limit` (capped at [`MAX_FSCK_PAGE`], and
    /// fewer when a page would outgrow a frame). Answered with `Fsck`; an
    /// empty page means the walk is over. Checking millions of files so
    /// needs neither one huge reply nor the whole report in memory on
    /// either end.
    FsckPage {
        after: Option<FileName>,
        limit: u32,
        what_if: Vec<NodeId>,
    },
    /// Operator: start rebalancing now (`start`), or only report its
    /// progress (answered with `Rebalance`).
    Rebalance {
        start: bool,
    },
    /// Is this a coordinator of that cluster, and how far is its catalog?
    /// Answered with `Pong`; any authenticated peer may ask.
    Ping,
    /// Coordinator -> coordinator of the same group: one message of the
    /// consensus engine (openraft). The body is the engine's own message,
    /// encoded by `coord::group` (postcard), bounded by the frame like
    /// everything else; answered with `Raft`.
    Raft {
        kind: RaftKind,
        body: Vec<u8>,
    },
    /// The coordinator group: members, leader, term, commit index and each
    /// follower's lag. Any member answers (a follower with what it knows).
    Coordinators,
    /// Incident records, newest first: all kept (at most
    /// [`MAX_INCIDENTS_LISTED`]), or the one with `id`. Answered with
    /// `Incidents`.
    Incidents {
        id: Option<u64>,
    },
    /// Move `from` to `to` in one journaled step (a mount's rename; no
    /// bytes move), replacing an existing `to` unless `replace` is false.
    /// Answered with `Done`.
    Rename {
        from: FileName,
        to: FileName,
        replace: bool,
    },
    /// Replace the attributes of a file (a mount's chmod, chown, utimens),
    /// bounded like a put's by [`check_attrs`]. Answered with `Done`.
    SetAttrs {
        name: FileName,
        attrs: Attrs,
    },
    /// Create `name` as an empty entry that only carries `attrs` (a mount's
    /// explicit empty directory or symbolic link); refused if the name
    /// exists. Answered with `Done`.
    MakeEntry {
        name: FileName,
        attrs: Attrs,
    },
    /// Operator: walk the catalog and have nodes give an owner tag to
    /// every copy that has none (chunks written before tags), so that a
    /// rebuild from the nodes can place them. Answered with `Retagged`.
    Retag,
}

/// Which consensus message a [`CoordRequest::Raft`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftKind {
    Append,
    Vote,
    Snapshot,
}

/// Most incidents one `Incidents` answer carries.
pub const MAX_INCIDENTS_LISTED: usize = 200;

/// Shortest chunk a fitted `PlanPut` cuts a file into: below this, more chunks
/// cost more per-chunk work (fsyncs, headers, catalog entries) than the
/// parity they save.
pub const MIN_FIT_CHUNK: u64 = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CoordResponse {
    Registered(RegisterAck),
    Plan(PutPlan),
    Committed(FileSummary),
    Aborted,
    Target(NodeAddr),
    File(FileInfo),
    Files(Vec<FileSummary>),
    Removed,
    Status(Box<ClusterStatus>),
    Fsck(FsckReport),
    Done,
    /// A new client key, as `NAME:HEX` for a key file.
    Key(String),
    Keys(Vec<String>),
    Rebalance(RebalanceStatus),
    /// Answer to `Ping`: the cluster and the last durable journal record.
    Pong {
        cluster: ClusterId,
        seq: u64,
    },
    /// Answer to `Raft`: the engine's reply, encoded like the request.
    Raft(Vec<u8>),
    /// This coordinator is a follower of a group (or has no leader): send
    /// the request to `leader` (its address), or when `None`, to another
    /// member. Nothing was done.
    NotLeader {
        leader: Option<String>,
    },
    Coordinators(GroupStatus),
    Incidents(Vec<crate::Incident>),
    /// Answer to `Retag`: chunks walked, and copies not retagged (a node
    /// down or refusing).
    Retagged {
        chunks: u64,
        failed: u64,
    },
}

/// The coordinator group as one member sees it (`dfs-sim coordinators`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupStatus {
    /// The member that answered.
    pub me: String,
    /// The leader's name, if this member knows one.
    pub leader: Option<String>,
    pub term: u64,
    /// Highest log index known committed / applied here.
    pub committed: u64,
    pub applied: u64,
    /// Milliseconds since the UNIX epoch when this member last saw the
    /// leader change (its own election or another's), 0 if never.
    pub last_change_ms: u64,
    pub members: Vec<GroupMember>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupMember {
    pub name: String,
    pub addr: String,
    pub leader: bool,
    /// Entries behind the leader's log (known on the leader only).
    pub lag: Option<u64>,
}

/// A node as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    pub id: NodeId,
    pub addr: String,
}

/// Where the chunks of a planned upload go.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutPlan {
    pub upload_id: u64,
    pub chunk_size: u64,
    pub replication: u32,
    /// Erasure code of every stripe of the file.
    pub scheme: Scheme,
    pub stripes: Vec<StripePlan>,
    /// The put's generation (see [`crate::tag`]): every chunk's owner tag
    /// carries it, and the write tokens are signed over those tags.
    pub generation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StripePlan {
    /// Data chunks in file order; each entry lists its replica nodes.
    pub data: Vec<ChunkPlan>,
    /// Parities in the scheme's member order (one copy each).
    pub parity: Vec<ChunkPlan>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkPlan {
    pub id: ChunkId,
    pub nodes: Vec<NodeAddr>,
    /// Write grant for this chunk (secured clusters).
    pub token: Option<BlockToken>,
}

impl PutPlan {
    /// The owner tag of member `member` of stripe `stripe` of this put (the
    /// client sends it, the coordinator signs the write token over it).
    pub fn owner_tag(&self, name: &FileName, size: u64, stripe: usize, member: usize) -> OwnerTag {
        let plan = self;
        // The same lengths `CommitPut` checks: full chunks, the file's last
        // one short.
        let cs = plan.chunk_size.max(1);
        let total = size.div_ceil(cs);
        let before: u64 = plan.stripes[..stripe.min(plan.stripes.len())]
            .iter()
            .map(|s| s.data.len() as u64)
            .sum();
        let data = plan.stripes.get(stripe).map_or(0, |s| s.data.len()) as u64;
        let lens = (before..before + data)
            .map(|i| {
                if i + 1 == total {
                    size - (total - 1) * cs
                } else {
                    cs
                }
            })
            .collect();
        OwnerTag {
            lens,
            name: name.clone(),
            generation: plan.generation,
            size,
            scheme: plan.scheme,
            replication: plan.replication,
            chunk_size: plan.chunk_size,
            stripes: plan.stripes.len() as u32,
            stripe: stripe as u32,
            data: plan.stripes.get(stripe).map_or(0, |s| s.data.len()) as u32,
            member: member as u32,
            attrs: Attrs::new(),
        }
    }
}

/// One chunk a node holds, as listed for a rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEntry {
    pub header: ChunkHeader,
    /// `None` for chunks written before tags (or whose tag is unreadable).
    pub tag: Option<OwnerTag>,
    /// The coordinator told the node this chunk's file was removed or
    /// replaced (a tombstone): a rebuild must not bring it back.
    pub doomed: bool,
}

/// What the client stored, stripe by stripe, in the plan's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitPut {
    pub upload_id: u64,
    pub stripes: Vec<StripeCommit>,
    /// Small metadata kept with the file (S3 content type, user metadata,
    /// ETag); bounded by [`check_attrs`].
    pub attrs: Attrs,
}

/// Most files one `ListPage` answers with.
pub const MAX_LIST_PAGE: u32 = 10_000;

/// Most files one `FsckPage` answers with: one page is one hold of the
/// coordinator's catalog lock, so it stays short.
pub const MAX_FSCK_PAGE: u32 = 2_048;

/// Most parts one `Concat` may join (S3 allows 10,000 per upload).
pub const MAX_CONCAT_PARTS: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StripeCommit {
    pub data: Vec<ChunkHeader>,
    pub parity: Vec<ChunkHeader>,
}

/// One line of `ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub name: FileName,
    pub size: u64,
    pub chunks: u64,
    pub created_ms: u64,
    pub attrs: Attrs,
}

/// A file's full catalog entry with live locations: what `get` and `stat` need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileInfo {
    pub name: FileName,
    pub size: u64,
    pub created_ms: u64,
    pub chunk_size: u64,
    pub replication: u32,
    pub scheme: Scheme,
    pub stripes: Vec<StripeInfo>,
    pub attrs: Attrs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StripeInfo {
    pub data: Vec<ChunkInfo>,
    /// Parities in the scheme's member order.
    pub parity: Vec<ChunkInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkInfo {
    pub header: ChunkHeader,
    /// Nodes believed to hold a copy, live ones first.
    pub locations: Vec<Location>,
    /// Read grant for this chunk (secured clusters).
    pub token: Option<BlockToken>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Location {
    pub node: NodeAddr,
    pub alive: bool,
    /// The node's failure domain (rack, enclosure), for `stat`.
    pub domain: String,
}

/// Liveness of a node as the coordinator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Heartbeats arrive on time.
    Alive,
    /// Session lost or two heartbeat intervals silent; not yet declared dead.
    Suspect,
    /// Missed `dead_after` heartbeats in a row, or never registered.
    Dead,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub addr: String,
    pub state: NodeState,
    /// Milliseconds since the last heartbeat, if any was ever received.
    pub last_heartbeat_ms_ago: Option<u64>,
    /// Chunks the catalog places on this node.
    pub catalog_chunks: u64,
    /// What the node itself reported.
    pub stats: NodeStats,
    /// Being drained: takes no new chunks, its copies are moved away.
    pub draining: bool,
    pub domain: String,
    /// Still a hot spare (holds nothing yet). A spare that received
    /// repaired copies becomes a regular node.
    pub spare: bool,
    /// Started as a spare and has since taken over data.
    pub was_spare: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The cluster's identity (hex).
    pub cluster: String,
    /// Started with `--read-only` (a damaged journal being inspected): no
    /// change is accepted, nothing is repaired or deleted.
    pub read_only: bool,
    /// Nodes that have seen a newer catalog than this coordinator holds: no
    /// delete is sent to them (the coordinator's directory may be a stale
    /// copy).
    pub catalog_behind: Vec<NodeId>,
    pub nodes: Vec<NodeStatus>,
    pub files: u64,
    pub bytes: u64,
    pub chunks: u64,
    pub replication: u32,
    /// The scheme a put without `--parity` gets now (`xor` narrowed to the
    /// live node count).
    pub scheme: Scheme,
    /// Every stripe must survive the loss of one whole domain.
    pub ha: bool,
    /// Storage per scheme in use.
    pub schemes: Vec<SchemeUsage>,
    pub chunk_size: u64,
    /// Chunks with fewer live copies than their target (parity blocks
    /// included).
    pub under_replicated: Vec<UnderProtected>,
    /// How many there are in all (the list stops at 1000).
    pub under_replicated_total: u64,
    /// Uploads planned but not yet committed.
    pub pending_uploads: u64,
    pub repair: RepairStatus,
    pub rebalance: RebalanceStatus,
    /// Repair and rebalance traffic per node that has any (the dashboard's
    /// tiles), and between nodes (its flows).
    pub traffic: Vec<crate::NodeTraffic>,
    pub flows: Vec<crate::Flow>,
}

/// Storage used by the files of one scheme and replication.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemeUsage {
    pub scheme: Scheme,
    pub replication: u32,
    pub files: u64,
    /// Bytes of the files themselves.
    pub logical_bytes: u64,
    /// Raw bytes of every copy of every member (data x R, parities once).
    pub stored_bytes: u64,
}

/// Where repair stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepairStatus {
    /// Chunks below target with no repair running, and their bytes.
    pub waiting_chunks: u64,
    pub waiting_bytes: u64,
    pub in_flight_chunks: u64,
    pub in_flight_bytes: u64,
    /// Repairs completed since the coordinator started.
    pub done_chunks: u64,
    pub done_bytes: u64,
    /// Bytes read by those repairs (a rebuild reads its read plan).
    pub read_bytes: u64,
    pub failed: u64,
    /// Bytes per second repaired during the current or last incident.
    pub rate_bytes_per_s: u64,
    /// Seconds from a node's death to full protection, for the last
    /// completed incident.
    pub last_mttr_ms: Option<u64>,
    /// How long ago the node death behind the current incident was.
    pub incident_open_ms: Option<u64>,
    /// Maximum repairs run at once.
    pub parallel: u32,
    /// Repair traffic of the open incident, else of the last one (an
    /// incident: repairs from the first one scheduled after a quiet period
    /// until nothing is left to repair).
    pub incident: Option<IncidentTraffic>,
}

/// What one repair incident read and rebuilt: the repair cost of the
/// schemes in use, as bytes read per byte rebuilt.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IncidentTraffic {
    /// Still repairing.
    pub open: bool,
    pub chunks: u64,
    /// Bytes read from surviving copies and members.
    pub read_bytes: u64,
    /// Bytes of the copies produced.
    pub rebuilt_bytes: u64,
    /// The same, per scheme and replication of the files repaired.
    pub schemes: Vec<SchemeTraffic>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemeTraffic {
    pub scheme: Scheme,
    pub replication: u32,
    pub chunks: u64,
    pub read_bytes: u64,
    pub rebuilt_bytes: u64,
}

/// What rebalancing is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RebalanceState {
    /// Not running: balanced, or never started.
    #[default]
    Idle,
    /// Moving copies.
    Running,
    /// Started, but repairs come first: no new move until they are done.
    Paused,
}

/// Progress of rebalancing and the usage it evens out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RebalanceStatus {
    pub state: RebalanceState,
    /// Why the current (or last) run started: `operator`, `node n5
    /// joined`, `imbalance`.
    pub trigger: String,
    /// Copies moved by the current (or last) run, and their bytes.
    pub moved_chunks: u64,
    pub moved_bytes: u64,
    /// Moves the run expects to make in all (estimated at its start).
    pub planned_chunks: u64,
    pub planned_bytes: u64,
    pub in_flight_chunks: u64,
    pub in_flight_bytes: u64,
    pub failed: u64,
    /// `coord --rebalance-rate`.
    pub rate_limit_bytes_per_s: u64,
    /// Every node within this percentage of the mean counts as balanced.
    pub tolerance_pct: u32,
    /// Mean stored bytes over the nodes that take data.
    pub mean_bytes: u64,
    /// Stored bytes per node that takes data (live, not draining, not a
    /// spare), as the catalog counts them.
    pub usage: Vec<NodeUsage>,
    /// The last run ended without reaching the tolerance: no move left
    /// that keeps every placement rule.
    pub stuck: bool,
    /// How long the last finished run took.
    pub last_run_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeUsage {
    pub node: NodeId,
    pub bytes: u64,
}

/// Answer to `Fsck`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FsckReport {
    pub what_if: Vec<NodeId>,
    pub files: Vec<FileHealth>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileHealth {
    pub name: FileName,
    pub size: u64,
    pub health: crate::health::Health,
    /// Only the chunks below target.
    pub chunks: Vec<ChunkHealth>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkHealth {
    pub id: ChunkId,
    pub stripe: u32,
    /// Position among the file's data chunks; `None` for a parity block.
    pub index: Option<u64>,
    pub live: u32,
    pub target: u32,
    pub repair: RepairState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepairState {
    /// Nothing scheduled (e.g. a what-if report, or no node to repair onto).
    Idle,
    Queued,
    Running,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnderProtected {
    pub file: FileName,
    pub chunk: ChunkId,
    pub parity: bool,
    pub live_copies: u32,
    pub target: u32,
}
