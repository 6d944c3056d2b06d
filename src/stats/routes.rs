//! Per-route figures: what the routes executed by `io::fan` did (multi-destination kinds, `warmup`, `l1l2`,
//! `migrate`'s deletes in its window). Workers count them in plain integers; control sums them by route name.

/// One route's counters (one worker's, or summed over the workers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteCounts {
    pub name: String,
    /// The route's `type`.
    pub kind: &'static str,
    /// Requests the route executed.
    pub requests: u64,
    /// Requests sent on to a next child by `failover` / `miss_failover`.
    pub failovers: u64,
    /// Background requests sent (all_async's children, shadow copies, warmup / l1l2 copies into the first child).
    pub copies_sent: u64,
    /// Background requests not sent: over the per-target or per-worker bound, or over the backend's queue bound.
    pub copies_dropped: u64,
    /// Background requests whose reply was a failure (connect error, timeout, an error reply).
    pub copies_failed: u64,
    /// warmup / l1l2 copies the first child stored.
    pub fills: u64,
}

impl RouteCounts {
    pub fn add(&mut self, other: &RouteCounts) {
        self.requests += other.requests;
        self.failovers += other.failovers;
        self.copies_sent += other.copies_sent;
        self.copies_dropped += other.copies_dropped;
        self.copies_failed += other.copies_failed;
        self.fills += other.fills;
    }
}

/// Sums `from` into `into` by route name (first-seen order).
pub fn merge_routes(into: &mut Vec<RouteCounts>, from: &[RouteCounts]) {
    for r in from {
        match into.iter_mut().find(|t| t.name == r.name) {
            Some(t) => t.add(r),
            None => into.push(r.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_sum_by_name() {
        let a = RouteCounts { name: "w".into(), kind: "warmup", requests: 2, fills: 1, ..Default::default() };
        let b = RouteCounts { name: "s".into(), kind: "shadow", copies_dropped: 3, ..Default::default() };
        let mut all = Vec::new();
        merge_routes(&mut all, &[a.clone(), b.clone()]);
        merge_routes(&mut all, &[a]);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].requests, all[0].fills, all[1].copies_dropped), (4, 2, 3));
    }
}
