//! SRV and NAPTR ordering (RFC 2782, RFC 3403) and the address shuffle on arbitrary records:
//! never a panic; the output is a permutation of the input (SRV: less the "." targets);
//! SRV priorities and NAPTR (order, preference) never decrease.
//!
//! Input: 8 bytes of random seed, then records of 7 bytes: three big-endian u16 (priority,
//! weight, port — or order, preference and flags/services choice for NAPTR) and a target
//! choice.

#![no_main]

use std::collections::HashMap;
use std::hash::Hash;

use libfuzzer_sys::fuzz_target;
use nkp_dns::order::{naptr_order, rfc2782_order, shuffle_addrs};
use nkp_dns::{NaptrRecord, SrvRecord};
use rand::SeedableRng;
use rand::rngs::StdRng;

const TARGETS: &[&str] = &[
    ".",
    "a.example",
    "A.Example.",
    "b.example",
    "",
    " c.example ",
];
const FLAGS: &[&str] = &["s", "S", "a", ""];
const SERVICES: &[&str] = &["SIP+D2U", "sip+d2t", "SIPS+D2T", "ECHO+D2W", "x"];

/// Whether `a` and `b` hold the same items the same number of times.
fn same_multiset<T: Eq + Hash>(a: &[T], b: &[T]) -> bool {
    let mut count: HashMap<&T, isize> = HashMap::new();
    for x in a {
        *count.entry(x).or_default() += 1;
    }
    for x in b {
        *count.entry(x).or_default() -= 1;
    }
    a.len() == b.len() && count.values().all(|n| *n == 0)
}

fuzz_target!(|data: &[u8]| {
    let Some((seed, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(u64::from_le_bytes(*seed));
    let mut srv = Vec::new();
    let mut naptr = Vec::new();
    for r in rest.chunks_exact(7) {
        let a = u16::from_be_bytes([r[0], r[1]]);
        let b = u16::from_be_bytes([r[2], r[3]]);
        let c = u16::from_be_bytes([r[4], r[5]]);
        let target = TARGETS[usize::from(r[6]) % TARGETS.len()];
        srv.push(SrvRecord::new(a, b, c, target));
        naptr.push(NaptrRecord::new(
            a,
            b,
            FLAGS[usize::from(c) % FLAGS.len()],
            SERVICES[usize::from(c >> 8) % SERVICES.len()],
            if r[6] & 0x80 != 0 {
                "!^.*$!sip:x@y!"
            } else {
                ""
            },
            target,
        ));
    }

    // SRV: a permutation of the usable records, priority groups in ascending order.
    let ordered = rfc2782_order(&srv, &mut rng);
    let usable: Vec<SrvRecord> = srv
        .iter()
        .filter(|r| !r.target.is_empty())
        .cloned()
        .collect();
    assert!(same_multiset(&ordered, &usable), "{srv:?} → {ordered:?}");
    assert!(
        ordered.windows(2).all(|w| w[0].priority <= w[1].priority),
        "{ordered:?}"
    );

    // NAPTR: a permutation, (order, preference) ascending, independent of the input order.
    let sorted = naptr_order(&naptr);
    assert!(same_multiset(&sorted, &naptr));
    assert!(
        sorted
            .windows(2)
            .all(|w| (w[0].order, w[0].preference) <= (w[1].order, w[1].preference)),
        "{sorted:?}"
    );
    let mut reversed = naptr.clone();
    reversed.reverse();
    assert_eq!(naptr_order(&reversed), sorted);

    // Addresses: a permutation; two or three are rotated.
    let shuffled = shuffle_addrs(&srv, &mut rng);
    assert!(same_multiset(&shuffled, &srv));
    if (2..=3).contains(&srv.len()) {
        assert!(
            (0..srv.len()).any(|k| {
                let mut r = srv.clone();
                r.rotate_left(k);
                r == shuffled
            }),
            "not a rotation: {srv:?} → {shuffled:?}"
        );
    }
});
