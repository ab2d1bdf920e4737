use super::*;

use AllocationPolicy::{Packed, Spread};

fn a(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// PFs on buses `bus` (PF `0000:bb:00.0`, VFs `0000:bb:10.0`..) with `vfs` VFs on NUMA `numa`.
fn inv(pfs: &[(u8, usize, Option<u32>)]) -> Inventory {
    Inventory::new(pfs.iter().flat_map(|&(bus, vfs, numa)| {
        (0..vfs).map(move |i| Slot {
            id: a(&format!("0000:{bus:02x}:10.{i}")),
            pf: a(&format!("0000:{bus:02x}:00.0")),
            numa,
            healthy: true,
        })
    }))
}

fn vf(bus: u8, i: usize) -> String {
    format!("0000:{bus:02x}:10.{i}")
}

/// Every device of `inv` except `taken`.
fn free_except(inv: &Inventory, taken: &[String]) -> Vec<String> {
    inv.slots
        .keys()
        .map(PciAddress::to_string)
        .filter(|id| !taken.contains(id))
        .collect()
}

fn pref(
    inv: &Inventory,
    p: AllocationPolicy,
    avail: &[String],
    must: &[String],
    size: i32,
) -> Vec<String> {
    preferred(inv, p, avail, must, size).unwrap()
}

fn buses(ids: &[String]) -> Vec<&str> {
    ids.iter().map(|s| &s[5..7]).collect()
}

#[test]
fn packed_fills_the_most_allocated_pf_first() {
    let i = inv(&[(3, 8, Some(0)), (4, 8, Some(0)), (5, 8, Some(0))]);
    // PF 04 has 3 allocated, PF 05 has 1, PF 03 none.
    let taken = [vf(4, 0), vf(4, 1), vf(4, 5), vf(5, 0)];
    let avail = free_except(&i, &taken);
    let p = pref(&i, Packed, &avail, &[], 3);
    assert_eq!(p, [vf(4, 2), vf(4, 3), vf(4, 4)]);
    // More than PF 04 has left: the rest from the next most allocated PF, lowest addresses first.
    let p = pref(&i, Packed, &avail, &[], 7);
    assert_eq!(
        p,
        [
            vf(4, 2),
            vf(4, 3),
            vf(4, 4),
            vf(4, 6),
            vf(4, 7),
            vf(5, 1),
            vf(5, 2)
        ]
    );
    // PF 03 stays whole.
    assert!(!p.iter().any(|id| id.starts_with("0000:03")));
}

#[test]
fn packed_on_an_idle_node_takes_the_lowest_pf_and_addresses() {
    let i = inv(&[(4, 4, None), (3, 4, None)]);
    let avail = free_except(&i, &[]);
    assert_eq!(
        pref(&i, Packed, &avail, &[], 2),
        [vf(3, 0), vf(3, 1)],
        "ties broken by lowest PCI address"
    );
    assert_eq!(
        pref(&i, Packed, &avail, &[], 5),
        [vf(3, 0), vf(3, 1), vf(3, 2), vf(3, 3), vf(4, 0)]
    );
}

#[test]
fn packed_counts_must_include_as_allocated_and_keeps_it_first() {
    let i = inv(&[(3, 4, Some(0)), (4, 4, Some(0))]);
    // PF 03 has one allocated, PF 04 none; the container must have 04:10.2.
    let avail = free_except(&i, &[vf(3, 0)]);
    let p = pref(&i, Packed, &avail, &[vf(4, 2)], 3);
    // Both PFs have 1 "allocated" now: tie, lowest PF first.
    assert_eq!(p, [vf(4, 2), vf(3, 1), vf(3, 2)]);
    let p = pref(&i, Packed, &avail, &[vf(4, 2), vf(4, 3)], 3);
    assert_eq!(p, [vf(4, 2), vf(4, 3), vf(4, 0)], "PF 04 now has 2");
}

#[test]
fn unhealthy_devices_do_not_count_as_allocated() {
    let mut i = inv(&[(3, 4, None), (4, 4, None)]);
    // Two devices of PF 04 are unhealthy (so the kubelet leaves them out of available).
    for k in [0, 1] {
        i.slots.get_mut(&a(&vf(4, k))).unwrap().healthy = false;
    }
    let avail = free_except(&i, &[vf(4, 0), vf(4, 1), vf(3, 0)]);
    assert_eq!(pref(&i, Packed, &avail, &[], 1), [vf(3, 1)]);
}

#[test]
fn spread_round_robins_over_pfs() {
    let i = inv(&[(3, 4, Some(0)), (4, 4, Some(0)), (5, 4, Some(0))]);
    let avail = free_except(&i, &[]);
    let p = pref(&i, Spread, &avail, &[], 3);
    assert_eq!(p, [vf(3, 0), vf(4, 0), vf(5, 0)]);
    let p = pref(&i, Spread, &avail, &[], 5);
    assert_eq!(p, [vf(3, 0), vf(4, 0), vf(5, 0), vf(3, 1), vf(4, 1)]);
}

#[test]
fn spread_starts_with_the_least_loaded_pf_and_avoids_the_must_include_pf() {
    let i = inv(&[(3, 4, None), (4, 4, None), (5, 4, None)]);
    // PF 03: 2 allocated, PF 04: 1, PF 05: 0.
    let avail = free_except(&i, &[vf(3, 0), vf(3, 1), vf(4, 0)]);
    let p = pref(&i, Spread, &avail, &[], 3);
    assert_eq!(p, [vf(5, 0), vf(4, 1), vf(3, 2)]);
    // With a must_include on PF 05, the next two go to the other PFs.
    let p = pref(&i, Spread, &avail, &[vf(5, 3)], 3);
    assert_eq!(p, [vf(5, 3), vf(4, 1), vf(3, 2)]);
    assert_eq!(buses(&p), ["05", "04", "03"]);
}

#[test]
fn spread_uses_a_pf_again_only_when_the_others_are_exhausted() {
    let i = inv(&[(3, 1, None), (4, 5, None)]);
    let avail = free_except(&i, &[]);
    let p = pref(&i, Spread, &avail, &[], 4);
    assert_eq!(p, [vf(3, 0), vf(4, 0), vf(4, 1), vf(4, 2)]);
}

#[test]
fn both_policies_prefer_the_numa_nodes_of_must_include() {
    // PF 03 on node 0 is the busiest, but the container already has a device on node 1.
    let i = inv(&[
        (3, 4, Some(0)),
        (4, 4, Some(1)),
        (5, 4, Some(1)),
        (6, 4, None),
    ]);
    let avail = free_except(&i, &[vf(3, 0), vf(3, 1), vf(5, 0)]);
    let p = pref(&i, Packed, &avail, &[vf(4, 3)], 4);
    // Node 1 only: PF 04 and PF 05 both have 1 (must_include / allocated); lowest PF first.
    assert_eq!(p, [vf(4, 3), vf(4, 0), vf(4, 1), vf(4, 2)]);
    let p = pref(&i, Packed, &avail, &[vf(4, 3)], 6);
    assert_eq!(&p[4..], [vf(5, 1), vf(5, 2)], "then the other node-1 PF");
    let p = pref(&i, Spread, &avail, &[vf(4, 3)], 3);
    assert_eq!(p, [vf(4, 3), vf(5, 1), vf(4, 0)], "spread within node 1");
    // Node 1 exhausted: the rest may come from anywhere.
    let p = pref(&i, Spread, &avail, &[vf(4, 3)], 8);
    assert_eq!(buses(&p[..7]), ["04", "05", "04", "05", "04", "05", "04"]);
    assert!(p[7].starts_with("0000:03") || p[7].starts_with("0000:06"));
    // Without must_include there is no NUMA preference: packed picks the busiest PF (03).
    assert_eq!(buses(&pref(&i, Packed, &avail, &[], 2)), ["03", "03"]);
}

#[test]
fn must_include_on_several_nodes_prefers_all_of_them() {
    let i = inv(&[(3, 2, Some(0)), (4, 2, Some(1)), (5, 2, Some(2))]);
    let avail = free_except(&i, &[]);
    let p = pref(&i, Spread, &avail, &[vf(3, 0), vf(5, 0)], 4);
    assert_eq!(p, [vf(3, 0), vf(5, 0), vf(3, 1), vf(5, 1)]);
}

#[test]
fn answers_have_the_exact_size_only_available_ids_and_every_must_include() {
    let i = inv(&[(3, 6, Some(0)), (4, 6, Some(1)), (5, 3, None)]);
    let taken = [vf(3, 1), vf(4, 4), vf(5, 0)];
    let mut avail = free_except(&i, &taken);
    avail.push("0000:99:00.0".into()); // not ours: never chosen
    avail.push("garbage".into());
    let ours = avail.len() - 2;
    for policy in [Packed, Spread] {
        for must in [vec![], vec![vf(4, 0)], vec![vf(5, 2), vf(3, 0)]] {
            for size in must.len()..=ours {
                let p = pref(&i, policy, &avail, &must, size as i32);
                assert_eq!(p.len(), size, "{policy:?} {must:?} {size}");
                assert_eq!(&p[..must.len()], &must[..]);
                let uniq: BTreeSet<&String> = p.iter().collect();
                assert_eq!(uniq.len(), size, "no duplicates: {p:?}");
                for id in &p {
                    assert!(avail.contains(id) && i.slots.contains_key(&a(id)), "{id}");
                }
            }
        }
    }
}

#[test]
fn duplicate_must_include_and_available_ids_count_once() {
    let i = inv(&[(3, 3, None)]);
    let avail = vec![vf(3, 0), vf(3, 0), vf(3, 1), vf(3, 2)];
    let p = pref(&i, Packed, &avail, &[vf(3, 2), vf(3, 2)], 2);
    assert_eq!(p, [vf(3, 2), vf(3, 0)]);
    assert_eq!(
        preferred(&i, Packed, &avail, &[], 4),
        Err(PreferError::TooFew {
            size: 4,
            available: 3
        })
    );
}

#[test]
fn impossible_requests_are_errors_that_say_why() {
    let i = inv(&[(3, 4, None)]);
    let avail = free_except(&i, &[vf(3, 3)]);
    let e = preferred(&i, Packed, &avail, &[], 4).unwrap_err();
    assert_eq!(
        e.to_string(),
        "allocation_size 4 is larger than the 3 available devices of this pool"
    );
    let e = preferred(&i, Spread, &avail, &[vf(3, 3)], 2).unwrap_err();
    assert_eq!(
        e.to_string(),
        "must_include device 0000:03:10.3 is not among the available devices"
    );
    let e = preferred(&i, Packed, &avail, &["0000:07:10.0".into()], 2).unwrap_err();
    assert!(e.to_string().contains("not a device of this pool"), "{e}");
    let e = preferred(&i, Packed, &avail, &["../etc".into()], 2).unwrap_err();
    assert_eq!(e, PreferError::NotOurs("../etc".into()));
    let e = preferred(&i, Packed, &avail, &[vf(3, 0), vf(3, 1)], 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "allocation_size 1 is smaller than the 2 must_include devices"
    );
    assert_eq!(
        preferred(&i, Packed, &avail, &[], -1),
        Err(PreferError::NegativeSize(-1))
    );
    assert_eq!(preferred(&i, Spread, &avail, &[], 0), Ok(vec![]));
}

#[test]
fn plain_devices_without_a_pf_are_groups_of_their_own() {
    let i = Inventory::new(
        ["0000:05:00.0", "0000:06:00.0", "0000:07:00.0"].map(|s| Slot {
            id: a(s),
            pf: a(s),
            numa: None,
            healthy: true,
        }),
    );
    let avail = free_except(&i, &["0000:06:00.0".to_string()]);
    assert_eq!(
        pref(&i, Packed, &avail, &[], 1),
        ["0000:05:00.0"],
        "no PF has any allocated device"
    );
    assert_eq!(
        pref(&i, Spread, &avail, &[], 2),
        ["0000:05:00.0", "0000:07:00.0"]
    );
}

#[test]
fn a_large_pool_is_answered_quickly() {
    let pfs: Vec<(u8, usize, Option<u32>)> = (0..8u8)
        .map(|b| (0x10 + b, 8, Some(u32::from(b % 2))))
        .collect();
    let i = inv(&pfs);
    let avail = free_except(&i, &[]);
    let t = std::time::Instant::now();
    for policy in [Packed, Spread] {
        let p = pref(&i, policy, &avail, &[vf(0x11, 0)], 32);
        assert_eq!(p.len(), 32);
    }
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
}
