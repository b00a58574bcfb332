//! Pure ordering of DNS answers: RFC 2782 (SRV), RFC 3403 (NAPTR) and the per-lookup address
//! shuffle of NkPACKET.
//!
//! hickory returns records in wire order; every ordering decision of nkp-dns lives here, with no
//! I/O, so it can be tested with a seeded random generator.
//!
//! ```
//! use nkp_dns::order::{rfc2782_order, SrvRecord};
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! let recs = vec![
//!     SrvRecord::new(2, 0, 5060, "b.example"),
//!     SrvRecord::new(1, 0, 5060, "a.example"),
//! ];
//! let ordered = rfc2782_order(&recs, &mut StdRng::seed_from_u64(1));
//! assert_eq!(ordered[0].target, "a.example"); // lower priority value first
//! ```

use rand::Rng;

/// One SRV record (RFC 2782), with its target as a lower-case name without the final dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SrvRecord {
    /// Lower values are tried first; groups of equal priority are strictly ordered.
    pub priority: u16,
    /// Relative weight for the random selection inside a priority group.
    pub weight: u16,
    /// The port of the service on the target.
    pub port: u16,
    /// The host offering the service.
    pub target: String,
}

impl SrvRecord {
    /// A record; the target is normalised (lower case, no final dot).
    pub fn new(priority: u16, weight: u16, port: u16, target: &str) -> Self {
        SrvRecord {
            priority,
            weight,
            port,
            target: normalize_name(target),
        }
    }
}

/// One NAPTR record (RFC 3403), text fields as received, replacement normalised
/// (lower case, no final dot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NaptrRecord {
    /// Lower values are processed first.
    pub order: u16,
    /// Among equal `order`, lower values are preferred.
    pub preference: u16,
    /// Flags (`"s"`: the replacement is an SRV name).
    pub flags: String,
    /// The service field, e.g. `"SIP+D2U"`.
    pub services: String,
    /// The substitution expression (nkp-dns only follows records with an empty one).
    pub regexp: String,
    /// The next name to query.
    pub replacement: String,
}

impl NaptrRecord {
    /// A record; the replacement is normalised (lower case, no final dot).
    pub fn new(
        order: u16,
        preference: u16,
        flags: &str,
        services: &str,
        regexp: &str,
        replacement: &str,
    ) -> Self {
        NaptrRecord {
            order,
            preference,
            flags: flags.to_string(),
            services: services.to_string(),
            regexp: regexp.to_string(),
            replacement: normalize_name(replacement),
        }
    }

    /// True when nkp-dns follows this record: flag `s` (any case) and an empty regexp.
    pub fn is_srv_terminal(&self) -> bool {
        self.flags.eq_ignore_ascii_case("s") && self.regexp.is_empty()
    }
}

/// Lower case, surrounding spaces and the final dot removed: the form used for cache keys and
/// record targets.
pub fn normalize_name(name: &str) -> String {
    let n = name.trim();
    let n = n.strip_suffix('.').unwrap_or(n);
    n.to_ascii_lowercase()
}

/// Orders SRV records as RFC 2782 says: priority groups strictly ascending; inside a group,
/// repeated weighted random selection.
///
/// Records with target `"."` ("service not available") are dropped. Every input record
/// (except those) appears exactly once in the output.
pub fn rfc2782_order<R: Rng + ?Sized>(records: &[SrvRecord], rng: &mut R) -> Vec<SrvRecord> {
    let mut out = Vec::with_capacity(records.len());
    for group in group_by_priority(records) {
        out.extend(weighted_order(group, rng));
    }
    out
}

/// Groups records by priority, ascending; each group keeps the input order.
pub fn group_by_priority(records: &[SrvRecord]) -> Vec<Vec<SrvRecord>> {
    let mut sorted: Vec<SrvRecord> = records
        .iter()
        .filter(|r| !r.target.is_empty())
        .cloned()
        .collect();
    sorted.sort_by_key(|r| r.priority); // stable
    let mut groups: Vec<Vec<SrvRecord>> = Vec::new();
    for r in sorted {
        match groups.last_mut() {
            Some(g) if g[0].priority == r.priority => g.push(r),
            _ => groups.push(vec![r]),
        }
    }
    groups
}

/// The RFC 2782 arrangement of one round: zero-weight records first (in their current order),
/// then the others; returned with the running sum of weights of each.
pub fn running_sums(records: &[SrvRecord]) -> Vec<(u32, SrvRecord)> {
    let zero = records.iter().filter(|r| r.weight == 0);
    let rest = records.iter().filter(|r| r.weight != 0);
    let mut sum = 0u32;
    zero.chain(rest)
        .map(|r| {
            sum += u32::from(r.weight);
            (sum, r.clone())
        })
        .collect()
}

/// Index of the first entry whose running sum is ≥ `r` (RFC 2782 selection). `sums` must be
/// non-decreasing; `r` must not exceed the last sum.
pub fn select(sums: &[u32], r: u32) -> usize {
    sums.partition_point(|&s| s < r)
        .min(sums.len().saturating_sub(1))
}

/// Orders one priority group by repeated weighted random selection (RFC 2782): arrange
/// (zero weights first), compute running sums, draw `r` uniformly in `[0, sum]`, take the first
/// record whose running sum is ≥ `r`, remove it, repeat.
pub fn weighted_order<R: Rng + ?Sized>(group: Vec<SrvRecord>, rng: &mut R) -> Vec<SrvRecord> {
    let mut remaining = group;
    let mut out = Vec::with_capacity(remaining.len());
    while !remaining.is_empty() {
        let arranged = running_sums(&remaining);
        let sums: Vec<u32> = arranged.iter().map(|(s, _)| *s).collect();
        let total = sums.last().copied().unwrap_or(0);
        let r = rng.random_range(0..=total);
        let (_, chosen) = arranged[select(&sums, r)].clone();
        if let Some(pos) = remaining.iter().position(|x| *x == chosen) {
            remaining.remove(pos);
        }
        out.push(chosen);
    }
    out
}

/// Orders NAPTR records as RFC 3403 says: ascending `order`, then ascending `preference`. Ties
/// are broken by the remaining fields so that the result does not depend on wire order.
pub fn naptr_order(records: &[NaptrRecord]) -> Vec<NaptrRecord> {
    let mut v = records.to_vec();
    v.sort_by(|a, b| {
        (
            a.order,
            a.preference,
            &a.flags,
            &a.services,
            &a.regexp,
            &a.replacement,
        )
            .cmp(&(
                b.order,
                b.preference,
                &b.flags,
                &b.services,
                &b.regexp,
                &b.replacement,
            ))
    });
    v
}

/// The per-lookup shuffle of addresses (spec §7.2): 0 or 1 item unchanged; 2 or 3 items a random
/// rotation; more items a random permutation.
pub fn shuffle_addrs<T: Clone, R: Rng + ?Sized>(items: &[T], rng: &mut R) -> Vec<T> {
    let mut v = items.to_vec();
    match v.len() {
        0 | 1 => {}
        2 | 3 => {
            let k = rng.random_range(0..v.len());
            v.rotate_left(k);
        }
        _ => {
            use rand::seq::SliceRandom;
            v.shuffle(rng);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::collections::{HashMap, HashSet};

    fn srv(p: u16, w: u16, t: &str) -> SrvRecord {
        SrvRecord::new(p, w, 1, t)
    }

    fn targets(v: &[SrvRecord]) -> Vec<&str> {
        v.iter().map(|r| r.target.as_str()).collect()
    }

    #[test]
    fn grouping_by_priority() {
        // §13 item 98, adapted: groups ascending, input order kept inside a group.
        let g = group_by_priority(&[srv(2, 3, "c"), srv(1, 1, "a"), srv(1, 2, "b")]);
        assert_eq!(g.len(), 2);
        assert_eq!(targets(&g[0]), ["a", "b"]);
        assert_eq!(targets(&g[1]), ["c"]);
    }

    #[test]
    fn running_sums_put_zero_weights_first() {
        // §13 item 99, adapted to RFC 2782 (zero weights first, others in their order).
        let recs = [
            srv(1, 5, "a"),
            srv(1, 10, "b"),
            srv(1, 0, "c"),
            srv(1, 25, "d"),
            srv(1, 10, "e"),
            srv(1, 0, "f"),
        ];
        let sums: Vec<(u32, String)> = running_sums(&recs)
            .into_iter()
            .map(|(s, r)| (s, r.target))
            .collect();
        let want = [
            (0, "c"),
            (0, "f"),
            (5, "a"),
            (15, "b"),
            (40, "d"),
            (50, "e"),
        ];
        let want: Vec<(u32, String)> = want.iter().map(|(s, t)| (*s, t.to_string())).collect();
        assert_eq!(sums, want);
        // Selection with r = 3 over running sums [1, 3, 4] picks the second.
        assert_eq!(select(&[1, 3, 4], 3), 1);
        assert_eq!(select(&[1, 3, 4], 0), 0);
        assert_eq!(select(&[1, 3, 4], 4), 2);
        assert_eq!(select(&[0, 0, 5], 0), 0);
        assert_eq!(select(&[0, 0, 5], 1), 2);
    }

    #[test]
    fn weighted_order_statistics() {
        // §13 item 100: over 1001 seeded runs, c (90) first more often than b (9), b than a (1).
        let recs = [srv(1, 1, "a"), srv(1, 9, "b"), srv(1, 90, "c")];
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let mut first: HashMap<String, usize> = HashMap::new();
        for _ in 0..1001 {
            let o = rfc2782_order(&recs, &mut rng);
            let set: HashSet<&str> = targets(&o).into_iter().collect();
            assert_eq!(o.len(), 3);
            assert_eq!(set, HashSet::from(["a", "b", "c"]));
            *first.entry(o[0].target.clone()).or_default() += 1;
        }
        let (a, b, c) = (first.get("a"), first.get("b"), first.get("c"));
        let (a, b, c) = (
            a.copied().unwrap_or(0),
            b.copied().unwrap_or(0),
            c.copied().unwrap_or(0),
        );
        assert!(c > b && b > a, "first counts a={a} b={b} c={c}");
        // Expected proportions 1/101, 9/101, 90/101 (+ r=0 hits the first arranged record).
        assert!(c > 800, "c first {c} times");
    }

    #[test]
    fn zero_weights_get_a_small_chance() {
        let recs = [srv(1, 0, "zero"), srv(1, 50, "heavy")];
        let mut rng = StdRng::seed_from_u64(7);
        let mut zero_first = 0;
        for _ in 0..2000 {
            let o = rfc2782_order(&recs, &mut rng);
            assert_eq!(o.len(), 2);
            if o[0].target == "zero" {
                zero_first += 1;
            }
        }
        // P(zero first) = 1/51 ≈ 39 of 2000: small but not nil.
        assert!(
            zero_first > 0 && zero_first < 200,
            "zero first {zero_first}"
        );

        // All-zero group: the sum is 0, so r is always 0 and the first arranged record wins
        // each round (RFC 2782): the input order is kept.
        let recs = [srv(1, 0, "x"), srv(1, 0, "y")];
        for _ in 0..50 {
            assert_eq!(targets(&rfc2782_order(&recs, &mut rng)), ["x", "y"]);
        }
    }

    #[test]
    fn rfc2782_sort_shapes() {
        // §13 item 101.
        let mut rng = StdRng::seed_from_u64(3);
        assert!(rfc2782_order(&[], &mut rng).is_empty());
        let one = [srv(5, 0, "solo")];
        assert_eq!(rfc2782_order(&one, &mut rng), one.to_vec());
        let recs = [srv(2, 0, "a"), srv(1, 0, "b"), srv(3, 0, "c")];
        assert_eq!(targets(&rfc2782_order(&recs, &mut rng)), ["b", "a", "c"]);
        let recs = [
            srv(2, 10, "a"),
            srv(1, 0, "b"),
            srv(3, 0, "c"),
            srv(2, 10, "d"),
        ];
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let o = rfc2782_order(&recs, &mut rng);
            let t = targets(&o);
            assert_eq!(t[0], "b");
            assert_eq!(t[3], "c");
            assert!(t[1..3] == ["a", "d"] || t[1..3] == ["d", "a"], "{t:?}");
            seen.insert(t[1].to_string());
        }
        assert_eq!(seen.len(), 2, "both orders of the equal-weight pair occur");
    }

    #[test]
    fn priority_groups_are_strict() {
        let recs = [
            srv(20, 1000, "late"),
            srv(10, 0, "early0"),
            srv(10, 1, "early1"),
        ];
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..300 {
            let o = rfc2782_order(&recs, &mut rng);
            assert_eq!(o[2].target, "late");
        }
    }

    #[test]
    fn dot_target_is_dropped() {
        let recs = [srv(1, 0, "."), srv(1, 0, "ok.example.")];
        let o = rfc2782_order(&recs, &mut StdRng::seed_from_u64(1));
        assert_eq!(targets(&o), ["ok.example"]);
    }

    #[test]
    fn naptr_sorted_by_order_then_preference() {
        let n = |o, p, s: &str| NaptrRecord::new(o, p, "s", s, "", "x.example.");
        let recs = [n(20, 1, "d"), n(10, 50, "b"), n(10, 10, "a"), n(15, 0, "c")];
        let got: Vec<String> = naptr_order(&recs).into_iter().map(|r| r.services).collect();
        assert_eq!(got, ["a", "b", "c", "d"]);
        assert!(naptr_order(&[]).is_empty());
        assert!(n(1, 1, "x").is_srv_terminal());
        assert!(NaptrRecord::new(1, 1, "S", "x", "", "y").is_srv_terminal());
        assert!(!NaptrRecord::new(1, 1, "a", "x", "", "y").is_srv_terminal());
        assert!(!NaptrRecord::new(1, 1, "s", "x", "!^.*$!sip:a@b!", "y").is_srv_terminal());
        assert_eq!(n(1, 1, "x").replacement, "x.example");
    }

    #[test]
    fn shuffle_rotates_small_lists_and_permutes_large_ones() {
        let mut rng = StdRng::seed_from_u64(99);
        assert!(shuffle_addrs::<u8, _>(&[], &mut rng).is_empty());
        assert_eq!(shuffle_addrs(&[1], &mut rng), [1]);
        let rotations = [[1, 2, 3], [2, 3, 1], [3, 1, 2]];
        let mut seen = HashSet::new();
        for _ in 0..300 {
            let v = shuffle_addrs(&[1, 2, 3], &mut rng);
            assert!(rotations.iter().any(|r| r[..] == v[..]), "{v:?}");
            seen.insert(v);
        }
        assert_eq!(seen.len(), 3, "every rotation occurs");
        let mut seen = HashSet::new();
        for _ in 0..2000 {
            let mut v = shuffle_addrs(&[1, 2, 3, 4], &mut rng);
            seen.insert(v.clone());
            v.sort();
            assert_eq!(v, [1, 2, 3, 4]);
        }
        assert_eq!(seen.len(), 24, "every permutation of 4 occurs");
    }
}
