//! The backends of one service and the pure choice among them: colour filter, smooth weighted
//! round-robin, power of two choices.
//!
//! The adapter builds a [`BackendSet`] from discovery (static config or etcd), narrows it to
//! [`Candidates`] for a session colour and the backends its circuit breakers allow, and lets a
//! picker choose. Indices always refer to positions in the `BackendSet`, so per-backend state the
//! adapter keeps (breakers, load counters) can live in a `Vec` beside it.

use rand_core::RngCore;

/// One backend instance of a service, as discovery reports it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Backend {
    /// `host:port` of its gRPC endpoint; also the value stored in the Redis route table.
    pub addr: String,
    /// Relative share of new placements (upstream's registry `weight`). 0 takes no new oids but
    /// keeps the ones already stuck to it, which is how a backend is drained.
    pub weight: u32,
    /// The colour (deployment group) it serves; `None` serves every colour.
    pub color: Option<String>,
}

impl Backend {
    /// Whether a session of colour `color` may be placed here.
    pub fn serves(&self, color: &str) -> bool {
        self.color.as_deref().is_none_or(|c| c == color)
    }
}

/// Why a [`BackendSet`] could not be built from a discovery snapshot.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendSetError {
    /// Two instances with one address: the route table could not tell them apart.
    #[error("backend address {addr:?} is listed twice")]
    DuplicateAddress {
        /// The repeated address.
        addr: String,
    },
    /// An empty address can never be dialled, and would match an empty route-table value.
    #[error("backend {index} has an empty address")]
    EmptyAddress {
        /// Its position in the snapshot.
        index: usize,
    },
}

/// The backends of one service at one moment, with unique non-empty addresses.
///
/// Replace it wholesale when discovery changes, and carry the round-robin state over with
/// [`SmoothWrr::rebuild`].
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct BackendSet {
    backends: Vec<Backend>,
}

impl BackendSet {
    /// Checks a discovery snapshot: every address non-empty and unique.
    pub fn new(backends: Vec<Backend>) -> Result<Self, BackendSetError> {
        let mut seen = std::collections::BTreeSet::new();
        for (index, backend) in backends.iter().enumerate() {
            if backend.addr.is_empty() {
                return Err(BackendSetError::EmptyAddress { index });
            }
            if !seen.insert(backend.addr.as_str()) {
                return Err(BackendSetError::DuplicateAddress {
                    addr: backend.addr.clone(),
                });
            }
        }
        Ok(BackendSet { backends })
    }

    /// All backends, in index order.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The backend at `index`.
    pub fn get(&self, index: usize) -> Option<&Backend> {
        self.backends.get(index)
    }

    /// The index of the backend with address `addr`.
    pub fn position(&self, addr: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.addr == addr)
    }

    /// Number of backends.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether the set has no backends.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The backends that serve `color`: upstream's node filter, except that a backend without a
    /// colour serves all of them. Narrow further with [`Candidates::retain`] (health, breakers).
    pub fn candidates_for<'a>(&'a self, color: &'a str) -> Candidates<'a> {
        let indices = (self.backends.iter().enumerate())
            .filter(|(_, b)| b.serves(color))
            .map(|(i, _)| i)
            .collect();
        Candidates {
            set: self,
            color,
            indices,
        }
    }
}

/// The backends of a [`BackendSet`] that one placement may use: those serving the session colour
/// and, after [`retain`](Self::retain), those the adapter considers available.
#[derive(Clone, Debug)]
pub struct Candidates<'a> {
    set: &'a BackendSet,
    color: &'a str,
    /// Ascending indices into `set`.
    indices: Vec<usize>,
}

impl<'a> Candidates<'a> {
    /// Keeps only the candidates for which `keep(index, backend)` holds, typically
    /// `|i, _| breakers[i].allows(now)`.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, &Backend) -> bool) {
        let set = self.set;
        self.indices
            .retain(|&i| set.get(i).is_some_and(|b| keep(i, b)));
    }

    /// The candidate indices into the set, ascending.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The colour these candidates serve.
    pub fn color(&self) -> &'a str {
        self.color
    }

    /// The set the indices refer to.
    pub fn set(&self) -> &'a BackendSet {
        self.set
    }

    /// Whether `index` is a candidate.
    pub fn contains(&self, index: usize) -> bool {
        self.indices.binary_search(&index).is_ok()
    }

    /// The index of the candidate with address `addr`, if it is one.
    pub fn position(&self, addr: &str) -> Option<usize> {
        self.set.position(addr).filter(|&i| self.contains(i))
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether no backend is left.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// `(index, backend)` for every candidate.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &'a Backend)> + '_ {
        let set = self.set;
        self.indices
            .iter()
            .filter_map(move |&i| set.get(i).map(|b| (i, b)))
    }
}

/// nginx smooth weighted round-robin, as upstream fabrica-kit uses it (copied there from kratos
/// `selector/wrr`).
///
/// Each pick adds every candidate's weight to its current weight, chooses the largest current
/// weight (the first one on ties), and subtracts the candidates' total weight from the chosen one.
/// Over a fixed candidate list the picks interleave in exact weight proportion: weights 5, 1, 1
/// give `a a b a c a a`. Upstream keeps the current weights in one map by address across all
/// colours; so does this, by set index, and [`rebuild`](Self::rebuild) keeps them for addresses
/// that survive a discovery change. Unlike upstream, weight 0 is never chosen (upstream could pick
/// it on a tie).
#[derive(Clone, Default, Debug)]
pub struct SmoothWrr {
    /// Current weight per set index.
    current: Vec<i64>,
}

impl SmoothWrr {
    /// Fresh state (all current weights 0) for `set`.
    pub fn new(set: &BackendSet) -> Self {
        SmoothWrr {
            current: vec![0; set.len()],
        }
    }

    /// Carries the state from `old` to `new`: a surviving address keeps its current weight, a new
    /// one starts at 0. Without this, every etcd update would restart the sequence.
    pub fn rebuild(&mut self, old: &BackendSet, new: &BackendSet) {
        let current = new
            .backends()
            .iter()
            .map(|b| {
                let old_index = old.position(&b.addr);
                old_index
                    .and_then(|i| self.current.get(i))
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        self.current = current;
    }

    /// Picks among `candidates` (skipping weight 0), or `None` when no candidate has a weight.
    ///
    /// The state is positional: if the set has changed size without a [`rebuild`](Self::rebuild),
    /// it starts over rather than credit one backend with another's history.
    pub fn pick(&mut self, candidates: &Candidates<'_>) -> Option<usize> {
        if self.current.len() != candidates.set().len() {
            self.current = vec![0; candidates.set().len()];
        }
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (index, backend) in candidates.iter() {
            if backend.weight == 0 {
                continue;
            }
            let Some(current) = self.current.get_mut(index) else {
                continue;
            };
            let weight = i64::from(backend.weight);
            *current = current.saturating_add(weight);
            total = total.saturating_add(weight);
            if best.is_none_or(|(_, max)| *current > max) {
                best = Some((index, *current));
            }
        }
        let (chosen, _) = best?;
        if let Some(current) = self.current.get_mut(chosen) {
            *current = current.saturating_sub(total);
        }
        Some(chosen)
    }
}

/// Power of two choices: of the two candidate indices `a` and `b` the caller drew at random, the
/// one with the lower load (`a` on a tie). An index outside `loads` is not a choice.
///
/// Two random probes avoid both the herd effect of always taking the global minimum (every gateway
/// piles onto the same idle backend) and the imbalance of one random probe.
pub fn power_of_two_choices(loads: &[u32], a: usize, b: usize) -> Option<usize> {
    match (loads.get(a), loads.get(b)) {
        (Some(la), Some(lb)) => Some(if lb < la { b } else { a }),
        (Some(_), None) => Some(a),
        (None, Some(_)) => Some(b),
        (None, None) => None,
    }
}

/// [`power_of_two_choices`] over `candidates` with weight > 0, drawing two distinct ones from
/// `rng`. `loads` is indexed like the set (e.g. open tunnels per backend); a missing entry counts
/// as unloaded. Use it instead of [`SmoothWrr`] when backends report load, e.g. for room kinds.
pub fn pick_less_loaded(
    candidates: &Candidates<'_>,
    loads: &[u32],
    rng: &mut impl RngCore,
) -> Option<usize> {
    let weighted: Vec<usize> = candidates
        .iter()
        .filter(|(_, b)| b.weight > 0)
        .map(|(i, _)| i)
        .collect();
    let n = weighted.len();
    let first = uniform_below(rng, n)?;
    let Some(second) = uniform_below(rng, n.saturating_sub(1)) else {
        return weighted.get(first).copied();
    };
    // Draw the second from the other n-1 positions so the two probes are distinct.
    let second = if second >= first {
        second.saturating_add(1)
    } else {
        second
    };
    let (a, b) = (*weighted.get(first)?, *weighted.get(second)?);
    let load = |i: usize| loads.get(i).copied().unwrap_or(0);
    Some(if load(b) < load(a) { b } else { a })
}

/// A uniform integer in `0..n` without modulo bias, or `None` when `n == 0`.
fn uniform_below(rng: &mut impl RngCore, n: usize) -> Option<usize> {
    let n = u64::try_from(n).ok().filter(|&n| n > 0)?;
    // 2^64 mod n: the values above `u64::MAX - rem` form a partial range that would bias it.
    let rem = (u64::MAX - n + 1) % n;
    let mut x = rng.next_u64();
    // Each draw is rejected with probability < 1/2; the bound keeps a broken RNG from spinning.
    for _ in 0..64 {
        if x <= u64::MAX - rem {
            break;
        }
        x = rng.next_u64();
    }
    usize::try_from(x % n).ok()
}
