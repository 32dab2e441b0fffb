//! The generator matrices and the linear algebra behind encode, decode,
//! "is this pattern decodable?" and "which members to read?".
//!
//! Every member of a stripe is a GF(2^8) linear combination of the `k` data
//! chunks: data member `i` is the unit vector `e_i`, parity `j` is row `j` of
//! the scheme's parity matrix. A set of members can rebuild member `t` iff
//! `t`'s row lies in the span of their rows, and the stripe is decodable iff
//! the rows of what is left span all `k` dimensions. Deciding with ranks
//! rather than counting losses makes one function right for every scheme,
//! including LRC patterns beyond `g + 1` losses that happen to decode.
//!
//! Matrices:
//! - `xor`: one all-ones row.
//! - `rs:K+M`: a Cauchy matrix `1 / (x_j + y_i)` (every square submatrix is
//!   invertible, so any `m` losses decode), columns scaled so parity 0 is a
//!   plain XOR (cheaper to encode, unchanged MDS property).
//! - `lrc:K+L+G`: a pyramid code. Start from an MDS code with `g + 1`
//!   parities whose first parity is the XOR of all data (the scaled Cauchy
//!   matrix above), split that XOR into one XOR per local group, keep the
//!   other `g` as globals. Any `g + 1` losses decode: if every local parity
//!   survives, their sum is the MDS code's XOR parity and at most `g + 1`
//!   members of an MDS code with `g + 1` parities are gone; if one is lost,
//!   at most `g` data and global members are gone, within reach of the
//!   globals alone. The exhaustive tests check this rather than trust it.
//!
//! Short stripes: a stripe with `data < k` real chunks is encoded as if the
//! missing data were zero chunks. Those virtual members are "present" for
//! free (their bytes are known zeros), are never read, and never stored.

use crate::error::Error;
use crate::gf;
use crate::scheme::{Role, Scheme};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Bytes processed per member before moving to the next output, so a block
/// of the source stays in cache while every parity is updated from it.
const BLOCK: usize = 32 * 1024;

/// A scheme's matrices (built in microseconds; [`Code::shared`] keeps one
/// per scheme).
#[derive(Debug, Clone)]
pub struct Code {
    scheme: Scheme,
    k: usize,
    /// `parity[j][i]`: coefficient of data `i` in parity `j`.
    parity: Vec<Vec<u8>>,
}

impl Code {
    pub fn new(scheme: Scheme) -> Result<Code, Error> {
        scheme.validate()?;
        let k = scheme.data_count();
        let parity = match scheme {
            Scheme::None => Vec::new(),
            Scheme::Xor { .. } => vec![vec![1; k]],
            Scheme::Rs { m, .. } => cauchy_xor_first(m as usize, k),
            Scheme::Lrc { l, g, .. } => {
                let (l, g) = (l as usize, g as usize);
                let size = k / l;
                let mds = cauchy_xor_first(g + 1, k);
                let locals = (0..l).map(|grp| (0..k).map(|i| u8::from(i / size == grp)).collect());
                locals.chain(mds.into_iter().skip(1)).collect()
            }
        };
        Ok(Code { scheme, k, parity })
    }

    /// The code of `scheme`, built once per distinct scheme in this
    /// process and shared: planner, rebalance, fsck and health ask for a
    /// file's code once per file, and a cluster has a handful of schemes.
    pub fn shared(scheme: Scheme) -> Result<Arc<Code>, Error> {
        static CODES: OnceLock<Mutex<HashMap<Scheme, Arc<Code>>>> = OnceLock::new();
        let codes = CODES.get_or_init(Default::default);
        // A poisoned map still holds only finished codes.
        let mut map = codes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&scheme) {
            return Ok(c.clone());
        }
        let code = Arc::new(Code::new(scheme)?);
        map.insert(scheme, code.clone());
        Ok(code)
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Data members of a full stripe.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Members of a full stripe: data, then parities.
    pub fn members(&self) -> usize {
        self.k + self.parity.len()
    }

    /// Member index of parity `j`.
    pub fn parity_member(&self, j: usize) -> usize {
        self.k + j
    }

    pub fn role(&self, member: usize) -> Role {
        self.scheme.role(member)
    }

    /// Coefficient of data `i` in parity `j` (tests, diagnostics).
    pub fn coefficient(&self, j: usize, i: usize) -> u8 {
        self.parity[j][i]
    }

    fn row(&self, member: usize) -> Vec<u8> {
        if member < self.k {
            let mut r = vec![0; self.k];
            r[member] = 1;
            r
        } else {
            self.parity[member - self.k].clone()
        }
    }

    fn check_data(&self, data: usize) -> Result<(), Error> {
        if data == 0 || data > self.k {
            return Err(Error::Shape(format!(
                "a {} stripe holds 1 to {} data chunks, not {data}",
                self.scheme, self.k
            )));
        }
        Ok(())
    }

    /// Real members of a stripe holding `data` data chunks.
    pub fn real_members(&self, data: usize) -> impl Iterator<Item = usize> + '_ {
        (0..data.min(self.k)).chain(self.k..self.members())
    }

    /// Adds data chunk `i`'s contribution to every parity:
    /// `parities[j] ^= coef(j, i) * src`. Start from zeroed parities, call
    /// once per data chunk (any order, any range as long as every call for
    /// one range uses the same offset); a chunk shorter than the parities is
    /// zero-padded. This is how a put encodes one chunk at a time and how
    /// callers work on ranges instead of whole stripes.
    pub fn encode_add(&self, i: usize, src: &[u8], parities: &mut [&mut [u8]]) {
        assert!(i < self.k, "data index {i} outside the stripe");
        assert_eq!(parities.len(), self.parity.len(), "one buffer per parity");
        for start in (0..src.len()).step_by(BLOCK) {
            let end = (start + BLOCK).min(src.len());
            for (j, p) in parities.iter_mut().enumerate() {
                gf::mul_add(self.parity[j][i], &src[start..end], &mut p[start..end]);
            }
        }
    }

    /// Encodes a whole (possibly short) stripe: parity length is the longest
    /// data chunk's. Convenience for tests and small data.
    pub fn encode(&self, data: &[&[u8]]) -> Result<Vec<Vec<u8>>, Error> {
        self.check_data(data.len())?;
        let len = data.iter().map(|d| d.len()).max().unwrap_or(0);
        let mut out = vec![vec![0u8; len]; self.parity.len()];
        let mut refs: Vec<&mut [u8]> = out.iter_mut().map(|p| p.as_mut_slice()).collect();
        for (i, d) in data.iter().enumerate() {
            self.encode_add(i, d, &mut refs);
        }
        Ok(out)
    }

    /// Inputs for the rank computations: the rows of `members` followed by
    /// the rows of the virtual zero data chunks.
    fn basis(&self, data: usize, members: &[usize]) -> Basis {
        let virt: Vec<usize> = (data..self.k).collect();
        let mut b = Basis::new(self.k, members.len() + virt.len());
        for (idx, &m) in members.iter().chain(&virt).enumerate() {
            b.insert(self.row(m), idx);
        }
        b
    }

    /// Can every data chunk (hence every member) be rebuilt when `lost`
    /// members are unavailable? The one decodability test of the system.
    /// Indices of virtual (short-stripe) members in `lost` are ignored:
    /// their bytes are known zeros.
    pub fn is_decodable(&self, data: usize, lost: &[usize]) -> bool {
        if self.check_data(data).is_err() {
            return false;
        }
        let present: Vec<usize> = self
            .real_members(data)
            .filter(|m| !lost.contains(m))
            .collect();
        self.basis(data, &present).rank() == self.k
    }

    /// Members of local group of `member`, itself included (`xor` stripes are
    /// one group; RS has none).
    fn group(&self, member: usize) -> Option<Vec<usize>> {
        match self.scheme {
            Scheme::Xor { .. } if member <= self.k => {
                Some((0..self.k).chain(std::iter::once(self.k)).collect())
            }
            Scheme::Lrc { l, .. } => {
                let size = self.k / l as usize;
                let g = if member < self.k {
                    member / size
                } else if member < self.k + l as usize {
                    member - self.k
                } else {
                    return None;
                };
                Some(
                    (g * size..(g + 1) * size)
                        .chain(std::iter::once(self.k + g))
                        .collect(),
                )
            }
            _ => None,
        }
    }

    /// Which members to read to rebuild `want` when `lost` are unavailable
    /// (`want` members count as lost). Prefers each wanted member's local
    /// group (LRC: `k / l` reads for one loss), else reads a set whose rank
    /// is `k` (RS: exactly `k` reads for a full stripe, fewer for a short
    /// one since virtual zeros are free), data before parities. Never lists
    /// a virtual member. Fails only when the pattern cannot rebuild `want`.
    pub fn read_plan(
        &self,
        data: usize,
        lost: &[usize],
        want: &[usize],
    ) -> Result<Vec<usize>, Error> {
        self.check_data(data)?;
        let members = self.members();
        if let Some(&w) = want
            .iter()
            .find(|&&w| w >= members || (w >= data && w < self.k))
        {
            return Err(Error::Shape(format!(
                "member {w} is not a real member of a {} stripe with {data} data chunks",
                self.scheme
            )));
        }
        let gone = |m: usize| lost.contains(&m) || want.contains(&m);
        // Local groups first.
        let mut local: Vec<usize> = Vec::new();
        let all_local = want.iter().all(|&w| match self.group(w) {
            Some(g) => {
                let others: Vec<usize> = g
                    .into_iter()
                    .filter(|&m| m != w && (m >= self.k || m < data))
                    .collect();
                if others.iter().any(|&m| gone(m)) {
                    return false;
                }
                local.extend(others);
                true
            }
            None => false,
        });
        if all_local && !want.is_empty() {
            local.sort_unstable();
            local.dedup();
            return Ok(local);
        }
        // Otherwise a greedy basis: keep a member only if it adds rank.
        let virt: Vec<usize> = (data..self.k).collect();
        let mut b = Basis::new(self.k, members);
        for (idx, &v) in virt.iter().enumerate() {
            b.insert(self.row(v), idx);
        }
        let mut chosen = Vec::new();
        for m in self.real_members(data).filter(|&m| !gone(m)) {
            if b.rank() == self.k {
                break;
            }
            if b.insert(self.row(m), virt.len() + chosen.len()) {
                chosen.push(m);
            }
        }
        if want.iter().all(|&w| b.express(&self.row(w)).is_some()) {
            Ok(chosen)
        } else {
            let mut lost: Vec<usize> = lost.iter().chain(want).copied().collect();
            lost.sort_unstable();
            lost.dedup();
            Err(Error::Undecodable {
                lost,
                wanted: want.to_vec(),
            })
        }
    }

    /// Coefficients that rebuild `want` from the members `read` (in that
    /// order) of a stripe with `data` data chunks.
    pub fn decoder(&self, data: usize, read: &[usize], want: &[usize]) -> Result<Decoder, Error> {
        self.check_data(data)?;
        if let Some(&m) = read.iter().chain(want).find(|&&m| m >= self.members()) {
            return Err(Error::Shape(format!(
                "member {m} outside a {} stripe",
                self.scheme
            )));
        }
        let b = self.basis(data, read);
        let mut coef = Vec::with_capacity(want.len());
        for &w in want {
            match b.express(&self.row(w)) {
                Some(c) => coef.push(c[..read.len()].to_vec()),
                None => {
                    return Err(Error::Undecodable {
                        lost: self
                            .real_members(data)
                            .filter(|m| !read.contains(m))
                            .collect(),
                        wanted: want.to_vec(),
                    })
                }
            }
        }
        Ok(Decoder {
            read: read.to_vec(),
            want: want.to_vec(),
            coef,
        })
    }

    /// Rebuilds `want` from whatever members are given (`Some` = present),
    /// indexed by member; virtual members may be `None`. Outputs are `len`
    /// bytes, the stripe's parity length (callers know it from the stored
    /// headers; a rebuilt data chunk is then cut to its own length).
    /// Convenience for tests and small data.
    pub fn reconstruct(
        &self,
        data: usize,
        members: &[Option<&[u8]>],
        want: &[usize],
        len: usize,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let lost: Vec<usize> = (0..self.members())
            .filter(|&m| members.get(m).map(|x| x.is_none()).unwrap_or(true))
            .collect();
        let read = self.read_plan(data, &lost, want)?;
        let dec = self.decoder(data, &read, want)?;
        let mut out = vec![vec![0u8; len]; want.len()];
        let mut refs: Vec<&mut [u8]> = out.iter_mut().map(|o| o.as_mut_slice()).collect();
        for (r, &m) in read.iter().enumerate() {
            dec.add(
                r,
                members[m].expect("read plan lists present members only"),
                &mut refs,
            );
        }
        Ok(out)
    }
}

/// Precomputed coefficients: `want[w] = sum over r of coef[w][r] * read[r]`.
#[derive(Debug, Clone)]
pub struct Decoder {
    read: Vec<usize>,
    want: Vec<usize>,
    coef: Vec<Vec<u8>>,
}

impl Decoder {
    /// Members to read, in the order `add` expects them.
    pub fn read(&self) -> &[usize] {
        &self.read
    }

    pub fn want(&self) -> &[usize] {
        &self.want
    }

    /// Adds read member number `r`'s contribution (a range of it) to every
    /// output (the same range of each): members can arrive one at a time
    /// and in pieces, so a decoder never needs the whole stripe in memory.
    pub fn add(&self, r: usize, src: &[u8], outs: &mut [&mut [u8]]) {
        assert_eq!(outs.len(), self.want.len(), "one buffer per wanted member");
        for start in (0..src.len()).step_by(BLOCK) {
            let end = (start + BLOCK).min(src.len());
            for (w, o) in outs.iter_mut().enumerate() {
                gf::mul_add(self.coef[w][r], &src[start..end], &mut o[start..end]);
            }
        }
    }
}

/// Cauchy matrix with `rows` rows over `k` columns, each column scaled so
/// that row 0 is all ones.
fn cauchy_xor_first(rows: usize, k: usize) -> Vec<Vec<u8>> {
    let mut m: Vec<Vec<u8>> = (0..rows)
        .map(|j| {
            (0..k)
                .map(|i| gf::inv(j as u8 ^ (rows + i) as u8))
                .collect()
        })
        .collect();
    for i in 0..k {
        let s = gf::inv(m[0][i]);
        for row in m.iter_mut() {
            row[i] = gf::mul(row[i], s);
        }
    }
    m
}

/// An echelon basis that remembers, for each of its rows, which combination
/// of the inserted inputs produced it.
struct Basis {
    k: usize,
    inputs: usize,
    rows: Vec<(Vec<u8>, usize, Vec<u8>)>,
}

impl Basis {
    fn new(k: usize, inputs: usize) -> Basis {
        Basis {
            k,
            inputs,
            rows: Vec::new(),
        }
    }

    fn rank(&self) -> usize {
        self.rows.len()
    }

    /// Eliminates every pivot from `v`, tracking the combination used.
    /// Rows are reduced in insertion order: row `j` is zero at the pivots of
    /// rows before it, so later steps never undo earlier ones.
    fn reduce(&self, v: &mut [u8], combo: &mut [u8]) {
        for (row, pivot, rc) in &self.rows {
            let f = v[*pivot];
            if f != 0 {
                for (x, y) in v.iter_mut().zip(row) {
                    *x ^= gf::mul(f, *y);
                }
                for (x, y) in combo.iter_mut().zip(rc) {
                    *x ^= gf::mul(f, *y);
                }
            }
        }
    }

    /// Adds input number `idx` with row `v`; false if it adds no rank.
    fn insert(&mut self, mut v: Vec<u8>, idx: usize) -> bool {
        debug_assert_eq!(v.len(), self.k);
        let mut combo = vec![0u8; self.inputs];
        combo[idx] = 1;
        self.reduce(&mut v, &mut combo);
        let Some(pivot) = v.iter().position(|&x| x != 0) else {
            return false;
        };
        let s = gf::inv(v[pivot]);
        v.iter_mut().for_each(|x| *x = gf::mul(*x, s));
        combo.iter_mut().for_each(|x| *x = gf::mul(*x, s));
        self.rows.push((v, pivot, combo));
        true
    }

    /// Coefficients over the inputs that produce `target`, if in the span.
    fn express(&self, target: &[u8]) -> Option<Vec<u8>> {
        let mut v = target.to_vec();
        let mut combo = vec![0u8; self.inputs];
        self.reduce(&mut v, &mut combo);
        v.iter().all(|&x| x == 0).then_some(combo)
    }
}
