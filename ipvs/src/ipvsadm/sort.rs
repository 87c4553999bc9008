//! ipvsadm's listing order.
//!
//! ipvsadm sorts the kernel's dump with `qsort()` and libipvs's `ipvs_cmp_services` /
//! `ipvs_cmp_dests`. Those compare addresses by subtracting them as unsigned 32-bit words and
//! reading the difference as a signed `int`, so two addresses more than 2^31 apart compare the
//! "wrong" way round: 192.168.0.1 sorts before 10.0.0.1. Such a comparison is not even
//! transitive (10.x < 100.x < 192.x < 10.x), so the result also depends on the sorting
//! algorithm and on the order of the input. Debian's ipvsadm runs on glibc 2.36, whose
//! `qsort()` is a top-down merge sort; [`merge_sort`] performs the same comparisons in the same
//! sequence, so given the dump in the kernel's order it lands on ipvsadm's order exactly.

use std::net::IpAddr;

use crate::{Destination, Family, Service, ServiceKey};

/// `AF_INET` and `AF_INET6`, which ipvsadm subtracts from each other.
fn af_number(family: Family) -> i32 {
    match family {
        Family::Inet => 2,
        Family::Inet6 => 10,
    }
}

/// An address as the 16 bytes of libipvs's `union nf_inet_addr`: IPv4 in the first four, the
/// rest zero.
fn address_words(addr: &IpAddr) -> [u32; 4] {
    match addr {
        IpAddr::V4(a) => [u32::from(*a), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            [0, 4, 8, 12].map(|i| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
        }
    }
}

/// The address part of both comparators: the first word only when the left entry is IPv4,
/// all four (until one differs) when it is IPv6; each difference wraps and is read as signed.
fn compare_addresses(left_family: Family, left: &IpAddr, right: &IpAddr) -> i32 {
    let (l, r) = (address_words(left), address_words(right));
    let words = match left_family {
        Family::Inet => 1,
        Family::Inet6 => 4,
    };
    l.iter()
        .zip(r.iter())
        .take(words)
        .map(|(a, b)| a.wrapping_sub(*b) as i32)
        .find(|d| *d != 0)
        .unwrap_or(0)
}

/// `ipvs_cmp_services`: firewall mark (unsigned difference read as signed), family, protocol,
/// address, port; negative means `a` goes first.
pub(crate) fn compare_services(a: &Service, b: &Service) -> i32 {
    let mark = |s: &Service| match s.key {
        ServiceKey::FwMark { mark, .. } => mark,
        ServiceKey::Addr { .. } => 0,
    };
    let r = mark(a).wrapping_sub(mark(b)) as i32;
    if r != 0 {
        return r;
    }
    let r = af_number(a.key.family()) - af_number(b.key.family());
    if r != 0 {
        return r;
    }
    match (&a.key, &b.key) {
        (
            ServiceKey::Addr {
                address: aa,
                protocol: ap,
                port: apt,
            },
            ServiceKey::Addr {
                address: ba,
                protocol: bp,
                port: bpt,
            },
        ) => {
            let r = i32::from(ap.number()) - i32::from(bp.number());
            if r != 0 {
                return r;
            }
            let r = compare_addresses(a.key.family(), aa, ba);
            if r != 0 {
                return r;
            }
            i32::from(*apt) - i32::from(*bpt)
        }
        // Equal marks and families: the kernel holds one such service at most.
        _ => 0,
    }
}

/// `ipvs_cmp_dests`: address (read in the left entry's family), then port.
pub(crate) fn compare_destinations(a: &Destination, b: &Destination) -> i32 {
    let family = a.family.unwrap_or_else(|| Family::of(&a.address));
    let r = compare_addresses(family, &a.address, &b.address);
    if r != 0 {
        return r;
    }
    i32::from(a.port) - i32::from(b.port)
}

/// glibc's `qsort()` (stdlib/msort.c): split in halves, the first `n / 2` long, sort each,
/// then merge, taking from the first half while `cmp(first, second) <= 0`.
pub(crate) fn merge_sort<T>(items: &mut [T], cmp: impl Fn(&T, &T) -> i32)
where
    T: Copy,
{
    let mut scratch = Vec::with_capacity(items.len());
    merge_sort_with(items, &mut scratch, &cmp);
}

fn merge_sort_with<T: Copy>(items: &mut [T], scratch: &mut Vec<T>, cmp: &impl Fn(&T, &T) -> i32) {
    let n = items.len();
    if n <= 1 {
        return;
    }
    let half = n / 2;
    merge_sort_with(&mut items[..half], scratch, cmp);
    merge_sort_with(&mut items[half..], scratch, cmp);

    scratch.clear();
    let (mut i, mut j) = (0, half);
    while i < half && j < n {
        if cmp(&items[i], &items[j]) <= 0 {
            scratch.push(items[i]);
            i += 1;
        } else {
            scratch.push(items[j]);
            j += 1;
        }
    }
    // What is left of the second half already sits at the end.
    scratch.extend_from_slice(&items[i..half]);
    items[..scratch.len()].copy_from_slice(scratch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Protocol, ServiceKey};

    fn tcp(addr: &str, port: u16) -> Service {
        Service::new(
            ServiceKey::Addr {
                address: addr.parse().unwrap(),
                protocol: Protocol::Tcp,
                port,
            },
            "rr",
        )
    }

    #[test]
    fn address_difference_wraps_to_signed() {
        // 0xC0A80001 - 0x0A000001 = 0xB6A80000, negative as an int.
        assert!(compare_services(&tcp("192.168.0.1", 80), &tcp("10.0.0.1", 80)) < 0);
        assert!(compare_services(&tcp("10.0.0.1", 80), &tcp("100.0.0.1", 80)) < 0);
        assert!(compare_services(&tcp("100.0.0.1", 80), &tcp("192.168.0.1", 80)) < 0);
        assert!(compare_services(&tcp("10.0.0.1", 80), &tcp("10.0.0.2", 80)) < 0);
        assert_eq!(
            compare_services(&tcp("10.0.0.1", 80), &tcp("10.0.0.1", 80)),
            0
        );
        assert_eq!(
            compare_services(&tcp("10.0.0.1", 443), &tcp("10.0.0.1", 80)),
            443 - 80
        );
    }

    #[test]
    fn marks_and_families_come_first() {
        let fwm = |mark, family| Service::new(ServiceKey::FwMark { mark, family }, "wlc");
        // Any address service (mark 0) before a small mark; a mark past 2^31 before both.
        assert!(compare_services(&tcp("10.0.0.1", 80), &fwm(7, Family::Inet)) < 0);
        assert!(compare_services(&fwm(0x8000_0001, Family::Inet), &tcp("10.0.0.1", 80)) < 0);
        assert!(compare_services(&fwm(7, Family::Inet), &fwm(7, Family::Inet6)) < 0);
        assert!(compare_services(&tcp("10.0.0.1", 80), &tcp("::1", 80)) < 0);
    }

    #[test]
    fn ipv6_compares_word_by_word() {
        assert!(compare_services(&tcp("fd00::1", 80), &tcp("fd00::2", 80)) < 0);
        // First words 0xfd000000 and 0x20010db8 differ by more than 2^31 the other way.
        assert!(compare_services(&tcp("2001:db8::1", 80), &tcp("fd00::1", 80)) > 0);
    }

    #[test]
    fn merge_sort_is_glibc_merge_order() {
        // A cycle a < b < c < a: the outcome is fixed by the merge sequence.
        // [c, a, b]: sort [c] | [a, b]; merge c vs a: c < a, take c; then a, b → c a b.
        let order = |v: &[u8]| {
            let mut v = v.to_vec();
            merge_sort(&mut v, |x, y| match (x, y) {
                (x, y) if x == y => 0,
                (b'a', b'b') | (b'b', b'c') | (b'c', b'a') => -1,
                _ => 1,
            });
            String::from_utf8(v).unwrap()
        };
        assert_eq!(order(b"cab"), "cab");
        assert_eq!(order(b"abc"), "abc");
        // [c, b, a]: [c] | [b, a] → [a, b]; merge c vs a: c < a, take c → c a b.
        assert_eq!(order(b"cba"), "cab");
        // [a, c, b]: [a] | [c, b] → [b, c]; merge a vs b: take a → a b c.
        assert_eq!(order(b"acb"), "abc");
        // [b, c, a]: [b] | [c, a] stays (c < a); merge b vs c: take b → b c a.
        assert_eq!(order(b"bca"), "bca");
        // Stable for equal keys and a plain total order.
        let mut v = vec![(3, 'x'), (1, 'y'), (3, 'a'), (2, 'z'), (1, 'b')];
        merge_sort(&mut v, |a, b| a.0 - b.0);
        assert_eq!(v, vec![(1, 'y'), (1, 'b'), (2, 'z'), (3, 'x'), (3, 'a')]);
    }
}
