//! Why a placement decision could not be made.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("only {live} live non-spare nodes for {scheme} with replication {replication} (needs {needed}); start more nodes or choose a narrower scheme")]
    NotEnoughNodes {
        live: usize,
        needed: usize,
        replication: u32,
        scheme: String,
    },
    #[error("--ha: a {scheme} stripe cannot survive the loss of any one domain over {have} failure domains ({domains}); it needs at least {needed} (start nodes with --domain in more domains, or choose a scheme tolerating more losses)")]
    NotEnoughDomains {
        have: usize,
        needed: usize,
        scheme: String,
        domains: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
