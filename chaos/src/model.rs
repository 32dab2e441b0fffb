//! The checker's model: for every name, the set of states it may be in
//! given the history so far, and the verdicts when an observation falls
//! outside that set.
//!
//! Each name belongs to one client, whose operations on it are sequential,
//! so a name's history is a sequence: an acknowledged put or rm collapses
//! the set to its effect, an indeterminate one adds its effect to the set
//! (it may or may not have happened, nothing else), and an observation
//! (get, stat, ls, a refused put or rm) narrows the set to what was seen.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A state a name can be in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Val {
    Absent,
    /// The SHA-256 (hex) of a content written by the workload.
    Content(String),
}

/// The four ways a run can fail; each must stay 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Violation {
    /// An acknowledged put (or overwrite) is gone or replaced by older
    /// content.
    Lost,
    /// Bytes never written under that name were returned.
    Wrong,
    /// A name acknowledged removed came back.
    Resurrected,
    /// Chunk files no file refers to, left after the grace period.
    Orphan,
}

impl Violation {
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::Lost => "acknowledged writes lost",
            Violation::Wrong => "wrong bytes returned",
            Violation::Resurrected => "deleted files resurrected",
            Violation::Orphan => "orphan chunks after grace",
        }
    }
}

/// What an observation saw.
#[derive(Debug, Clone)]
pub enum Seen {
    Absent,
    /// Exactly these bytes.
    Content(String),
    /// The name exists; its size, if known.
    Present(Option<u64>),
}

#[derive(Debug, Default)]
pub struct NameModel {
    /// States the name may be in now.
    allowed: BTreeSet<Val>,
    /// Every content ever written under this name (hash -> size), acked or
    /// not: to tell a stale read from bytes that never existed.
    written: BTreeMap<String, u64>,
}

impl NameModel {
    /// A name that does not exist yet.
    pub fn absent() -> NameModel {
        NameModel {
            allowed: [Val::Absent].into(),
            written: BTreeMap::new(),
        }
    }

    /// A put is about to send this content.
    pub fn writing(&mut self, hash: &str, size: u64) {
        self.written.insert(hash.to_string(), size);
    }

    /// An operation whose effect is `v` completed with `ok` (collapse) or
    /// unknown outcome (either).
    pub fn effect(&mut self, v: Val, acknowledged: bool) {
        if acknowledged {
            self.allowed = [v].into();
        } else {
            self.allowed.insert(v);
        }
    }

    pub fn may_be_absent(&self) -> bool {
        self.allowed.contains(&Val::Absent)
    }

    /// Checks an observation; narrows the model to it. Returns the
    /// violation it reveals, if any.
    pub fn observe(&mut self, seen: &Seen) -> Option<Violation> {
        let only_absent = self.allowed.iter().all(|v| *v == Val::Absent);
        match seen {
            Seen::Absent => {
                let bad = (!self.may_be_absent()).then_some(Violation::Lost);
                self.allowed = [Val::Absent].into();
                bad
            }
            Seen::Content(h) => {
                let v = Val::Content(h.clone());
                let bad = if self.allowed.contains(&v) {
                    None
                } else if !self.written.contains_key(h) {
                    Some(Violation::Wrong)
                } else if only_absent {
                    Some(Violation::Resurrected)
                } else {
                    Some(Violation::Lost)
                };
                self.allowed = [v].into();
                bad
            }
            Seen::Present(size) => {
                let fits = |v: &Val| match v {
                    Val::Absent => false,
                    Val::Content(h) => size.is_none_or(|s| self.written.get(h) == Some(&s)),
                };
                let keep: BTreeSet<Val> =
                    self.allowed.iter().filter(|v| fits(v)).cloned().collect();
                if !keep.is_empty() {
                    self.allowed = keep;
                    return None;
                }
                let known = size.is_none_or(|s| self.written.values().any(|w| *w == s));
                let bad = if !known {
                    Violation::Wrong
                } else if only_absent {
                    Violation::Resurrected
                } else {
                    Violation::Lost
                };
                // Narrow to whatever written content fits, so that one
                // fault is counted once.
                self.allowed = self
                    .written
                    .iter()
                    .filter(|(_, w)| size.is_none_or(|s| **w == s))
                    .map(|(h, _)| Val::Content(h.clone()))
                    .collect();
                if self.allowed.is_empty() {
                    self.allowed.insert(Val::Absent);
                }
                Some(bad)
            }
        }
    }

    /// Whether the name may hold some content (the final check reads it).
    pub fn may_exist(&self) -> bool {
        self.allowed.iter().any(|v| *v != Val::Absent)
    }

    /// The states allowed, for messages.
    pub fn describe(&self) -> String {
        let v: Vec<String> = self
            .allowed
            .iter()
            .map(|v| match v {
                Val::Absent => "absent".to_string(),
                Val::Content(h) => h[..12.min(h.len())].to_string(),
            })
            .collect();
        v.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Val {
        Val::Content(s.into())
    }

    #[test]
    fn acked_put_then_absent_is_lost() {
        let mut m = NameModel::absent();
        m.writing("aa", 3);
        m.effect(c("aa"), true);
        assert_eq!(m.observe(&Seen::Absent), Some(Violation::Lost));
        // Counted once: the model follows what was seen.
        assert_eq!(m.observe(&Seen::Absent), None);
    }

    #[test]
    fn indeterminate_put_may_go_either_way() {
        for seen in [Seen::Absent, Seen::Content("aa".into())] {
            let mut m = NameModel::absent();
            m.writing("aa", 3);
            m.effect(c("aa"), false);
            assert_eq!(m.observe(&seen), None, "{seen:?}");
        }
        // But never a third state.
        let mut m = NameModel::absent();
        m.writing("aa", 3);
        m.effect(c("aa"), false);
        assert_eq!(
            m.observe(&Seen::Content("bb".into())),
            Some(Violation::Wrong)
        );
    }

    #[test]
    fn stale_content_after_acked_overwrite_is_lost() {
        let mut m = NameModel::absent();
        m.writing("aa", 3);
        m.effect(c("aa"), true);
        m.writing("bb", 4);
        m.effect(c("bb"), true);
        assert_eq!(
            m.observe(&Seen::Content("aa".into())),
            Some(Violation::Lost)
        );
    }

    #[test]
    fn removed_then_seen_is_resurrected() {
        let mut m = NameModel::absent();
        m.writing("aa", 3);
        m.effect(c("aa"), true);
        m.effect(Val::Absent, true);
        assert_eq!(
            m.observe(&Seen::Present(Some(3))),
            Some(Violation::Resurrected)
        );
        let mut m = NameModel::absent();
        m.writing("aa", 3);
        m.effect(c("aa"), true);
        m.effect(Val::Absent, true);
        assert_eq!(
            m.observe(&Seen::Content("aa".into())),
            Some(Violation::Resurrected)
        );
    }

    #[test]
    fn sizes_narrow_and_check() {
        let mut m = NameModel::absent();
        m.writing("aa", 3);
        m.effect(c("aa"), true);
        m.writing("bb", 4);
        m.effect(c("bb"), false);
        assert_eq!(m.observe(&Seen::Present(Some(4))), None);
        assert_eq!(
            m.observe(&Seen::Content("aa".into())),
            Some(Violation::Lost)
        );
        assert_eq!(m.observe(&Seen::Present(Some(99))), Some(Violation::Wrong));
    }
}
