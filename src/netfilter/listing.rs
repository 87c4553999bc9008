//! Checking ipvsd's table against what it should hold, without replacing it.
//!
//! Replacing the whole table repairs anything done to it by hand, but at 10,000 Services the
//! `nft` tool takes seconds to parse the text of a replacement, and a sync that waits for it
//! holds back every change behind it. So the periodic repair reads the table instead (`nft
//! list table`, which can run beside the syncs) and replaces it only when it differs: a set
//! element missing or extra, or a chain whose number of rules is not what ipvsd writes.
//!
//! Elements changed by a transaction while the listing ran may show either way in it; the
//! caller names them and they are not compared (the next repair will).

use std::collections::{BTreeMap, BTreeSet};

use super::{render_table, MasqueradeConfig, SetContents, SetDigests};

/// ipvsd's table as `nft list table` prints it: the elements of each set and map, and the
/// number of rules in each chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Elements by set name, in the form transactions write them (see [`normalize`]).
    pub elements: SetContents,
    /// Rules by chain name.
    pub rules: BTreeMap<String, usize>,
}

/// Reads the text of `nft list table` (or of a replacement ipvsd writes: the two share the
/// block structure). Counters' packet lines, set types, flags and comments are not content.
pub fn parse(text: &str) -> Listing {
    let mut elements = SetContents::default();
    let rules = walk(text, |name, text| add_elements(&mut elements, name, text));
    Listing { elements, rules }
}

/// ipvsd's table as a repair reads it (see [`check`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Rules by chain name.
    pub rules: BTreeMap<String, usize>,
    /// The elements of the sets whose digest is not the one expected, in written form.
    pub elements: SetContents,
    /// The sets whose digest is the one expected.
    pub agreeing: BTreeSet<String>,
}

/// Reads the text of `nft list table` as [`parse`], [`to_written_form`] and [`take_agreeing`]
/// do one after the other, a set at a time: only the elements of sets that differ from
/// `expected` are kept, so a table that holds what it should is never held whole as elements
/// (at 90,000 elements the two whole copies were 12 MiB beside the syncs).
pub fn check(text: &str, expected: &SetDigests) -> Checked {
    let mut checked = Checked::default();
    checked.rules = walk(text, |name, text| {
        let mut one = SetContents::default();
        add_elements(&mut one, name, text);
        let Some(listed) = one.0.remove(name) else {
            return;
        };
        let interval = is_interval(name);
        let written: BTreeSet<String> = listed.iter().map(|e| written_form(e, interval)).collect();
        if expected.agree(name, &written) {
            checked.agreeing.insert(name.to_owned());
        } else {
            checked.elements.0.insert(name.to_owned(), written);
        }
    });
    checked
}

/// Walks the text of a table: calls `on_elements` with each set's name and the text of its
/// elements, and returns the rules counted in each chain.
fn walk(text: &str, mut on_elements: impl FnMut(&str, &str)) -> BTreeMap<String, usize> {
    let mut rules: BTreeMap<String, usize> = BTreeMap::new();
    let mut block: Option<(&str, &str)> = None; // (kind, name)
    let mut elements: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(buffer) = elements.as_mut() {
            buffer.push_str(line);
            buffer.push(' ');
            if line.ends_with('}') {
                let (_, name) = block.unwrap_or(("", ""));
                let text = elements.take().unwrap_or_default();
                on_elements(name, &text);
            }
            continue;
        }
        if line == "}" {
            block = None;
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match (block, words.as_slice()) {
            (None, [kind @ ("set" | "map" | "chain" | "counter"), name, "{", ..]) => {
                if *kind == "chain" {
                    rules.entry((*name).to_owned()).or_default();
                }
                block = Some((kind, name));
            }
            (Some((_, _)), ["elements", "=", ..]) => {
                let rest = line.split_once('=').map_or("", |(_, r)| r).trim();
                if rest.ends_with('}') {
                    let (_, name) = block.unwrap_or(("", ""));
                    on_elements(name, rest);
                } else {
                    elements = Some(format!("{rest} "));
                }
            }
            (Some(("chain", name)), [first, ..]) => {
                let declaration = matches!(*first, "type" | "policy" | "comment");
                if !declaration {
                    *rules.entry(name.to_owned()).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    rules
}

fn add_elements(contents: &mut SetContents, set: &str, text: &str) {
    let inner = text
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim();
    let out = contents.0.entry(set.to_owned()).or_default();
    for element in inner.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        out.insert(element.to_owned());
    }
    if out.is_empty() {
        contents.0.remove(set);
    }
}

/// An element with its protocol by name, as transactions write it: `nft` prints it by number
/// where the machine has no `/etc/protocols`, and spaces as it likes.
pub fn normalize(element: &str) -> String {
    let words: Vec<&str> = element.split_whitespace().collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    // The protocol is the second component of every concatenation ipvsd writes.
    let mut component: usize = 0;
    for word in words {
        if word == "." {
            component = component.saturating_add(1);
            out.push(word.to_owned());
            continue;
        }
        if word == ":" {
            component = usize::MAX;
            out.push(word.to_owned());
            continue;
        }
        let named = match (component, word.parse::<u8>()) {
            (1, Ok(number)) => super::protocol_name(ipvs::Protocol::from_number(number.into())),
            _ => word.to_owned(),
        };
        out.push(named);
    }
    out.join(" ")
}

/// How many rules each chain of the table ipvsd writes with these flags holds.
pub fn expected_rules(config: &MasqueradeConfig) -> BTreeMap<String, usize> {
    parse(&render_table(config, &SetContents::default())).rules
}

/// How the chains of a listed table differ from those ipvsd writes (rules counted per chain);
/// empty when they agree. Each difference is a short description for the log.
pub fn rule_differences(
    listed: &BTreeMap<String, usize>,
    expected: &BTreeMap<String, usize>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (chain, count) in expected {
        let found = listed.get(chain).copied().unwrap_or(0);
        if found != *count {
            out.push(format!("chain {chain}: {found} rules, {count} expected"));
        }
    }
    for chain in listed.keys() {
        if !expected.contains_key(chain) {
            out.push(format!("chain {chain}: not ipvsd's"));
        }
    }
    out
}

/// Element lookups a comparison needs, from what the table should hold: [`SetContents`], or
/// the controller's [`super::ElementIndex`] itself (no copy of a large table's elements).
pub trait ElementLookup {
    /// Whether set `set` should hold `element` (in the form transactions write it).
    fn holds(&self, set: &str, element: &str) -> bool;
    /// How many elements set `set` should hold.
    fn count(&self, set: &str) -> usize;
    /// The sets that should hold elements.
    fn set_names(&self) -> Vec<&str>;
}

impl ElementLookup for SetContents {
    fn holds(&self, set: &str, element: &str) -> bool {
        self.0.get(set).is_some_and(|s| s.contains(element))
    }

    fn count(&self, set: &str) -> usize {
        self.0.get(set).map_or(0, BTreeSet::len)
    }

    fn set_names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Puts listed elements in the form transactions write them, where `nft` prints them
/// otherwise (see [`normalize`]): a protocol number by name, and a range of an interval set
/// with its prefix length even when it is a single address. Done where the listing is read,
/// beside the syncs, so that the comparison itself only looks elements up.
pub fn to_written_form(listed: SetContents) -> SetContents {
    SetContents(
        listed
            .0
            .into_iter()
            .map(|(set, elements)| {
                let interval = is_interval(&set);
                let elements = elements.iter().map(|e| written_form(e, interval)).collect();
                (set, elements)
            })
            .collect(),
    )
}

/// Whether `set` is the one interval set, whose single-address ranges `nft` prints bare.
fn is_interval(set: &str) -> bool {
    set.starts_with(super::SetKind::FirewallAllow.base())
}

/// One listed element in the form transactions write it (see [`to_written_form`]).
fn written_form(element: &str, interval: bool) -> String {
    let mut e = normalize(element);
    if interval {
        let last = e.rsplit(' ').next().unwrap_or_default();
        if !last.contains('/') {
            let length = if last.contains(':') { 128 } else { 32 };
            e = format!("{e}/{length}");
        }
    }
    e
}

/// Takes out of `listed` (in written form) the sets whose elements have the digest `expected`
/// gives them (an empty set when it gives none), and returns their names: those sets held
/// what they should when the repair began, and need no comparison element by element.
pub fn take_agreeing(listed: &mut SetContents, expected: &SetDigests) -> BTreeSet<String> {
    let agreeing: BTreeSet<String> = listed
        .0
        .iter()
        .filter(|(name, elements)| expected.agree(name, elements))
        .map(|(name, _)| name.clone())
        .collect();
    listed.0.retain(|name, _| !agreeing.contains(name));
    agreeing
}

/// How the listed elements (in written form, see [`to_written_form`]) differ from what the
/// sets should hold, leaving out the elements `unsettled` (changed while the listing ran) and
/// the sets `agreeing` (found equal by digest, see [`take_agreeing`]); empty when they agree.
pub fn element_differences(
    listed: &SetContents,
    expected: &impl ElementLookup,
    unsettled: &SetContents,
    agreeing: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let empty = BTreeSet::new();
    let mut names: BTreeSet<&str> = expected.set_names().into_iter().collect();
    names.extend(listed.0.keys().map(String::as_str));
    for name in names.into_iter().filter(|n| !agreeing.contains(*n)) {
        let have = listed.0.get(name).unwrap_or(&empty);
        let skip = unsettled.0.get(name).unwrap_or(&empty);
        let mut extra = 0;
        let mut present = 0;
        for element in have {
            if expected.holds(name, element) {
                present += 1;
            } else if !skip.contains(element) {
                extra += 1;
            }
        }
        // Expected but not listed, less those that changed while the listing ran.
        let unsettled_missing = skip
            .iter()
            .filter(|e| expected.holds(name, e) && !have.contains(*e))
            .count();
        let missing = expected.count(name) - present - unsettled_missing;
        if missing > 0 || extra > 0 {
            out.push(format!("set {name}: {missing} missing, {extra} extra"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `nft list table inet ipvsd` prints a small table (nftables 1.0.6).
    const LISTED: &str = "table inet ipvsd {
	comment \"Kubernetes Services beside IPVS\"
	set cluster-ips-v4 {
		type ipv4_addr . inet_proto . inet_service
		comment \"cluster IPs\"
		elements = { 10.96.0.1 . tcp . 443, 10.96.0.10 . udp . 53,
			     10.96.0.10 . tcp . 53 }
	}
	set firewall-allow-v4 {
		type ipv4_addr . inet_proto . inet_service . ipv4_addr
		flags interval
		elements = { 192.0.2.10 . tcp . 80 . 203.0.113.7 }
	}
	set service-addresses-v6 {
		type ipv6_addr
	}
	counter port-filter-rejected {
		packets 3 bytes 180
	}
	chain filter-input {
		type filter hook input priority filter; policy accept;
		ct state new ip daddr @service-addresses-v4 counter name \"port-filter-rejected\" reject
		ct state new ip6 daddr @service-addresses-v6 counter name \"port-filter-rejected\" reject
	}
}
";

    fn contents(sets: &[(&str, &[&str])]) -> SetContents {
        SetContents(
            sets.iter()
                .map(|(name, elements)| {
                    (
                        (*name).to_owned(),
                        elements.iter().map(|e| (*e).to_owned()).collect(),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn a_listing_reads_as_elements_by_set_and_rules_by_chain() {
        let listing = parse(LISTED);
        assert_eq!(
            listing.elements,
            contents(&[
                (
                    "cluster-ips-v4",
                    &[
                        "10.96.0.1 . tcp . 443",
                        "10.96.0.10 . udp . 53",
                        "10.96.0.10 . tcp . 53"
                    ]
                ),
                (
                    "firewall-allow-v4",
                    &["192.0.2.10 . tcp . 80 . 203.0.113.7"]
                ),
            ])
        );
        assert_eq!(listing.rules, [("filter-input".to_owned(), 2)].into());
    }

    #[test]
    fn the_table_ipvsd_writes_reads_back_as_its_own_rules() {
        let rules = expected_rules(&MasqueradeConfig::default());
        assert!(rules.len() >= 4, "{rules:?}");
        assert!(rules.values().all(|n| *n > 0), "{rules:?}");
        let elements = contents(&[("cluster-ips-v4", &["10.96.0.1 . tcp . 443"])]);
        let written = parse(&render_table(&MasqueradeConfig::default(), &elements));
        assert_eq!(written.elements, elements);
        assert_eq!(written.rules, rules);
    }

    #[test]
    fn elements_compare_whatever_nft_names_protocols_and_host_prefixes() {
        assert_eq!(normalize("10.96.0.10 . 6 . 80"), "10.96.0.10 . tcp . 80");
        let listed = SetContents(
            [(
                "firewall-allow-v6".to_owned(),
                ["fd00::1 . 17 . 53 . fd00::2".to_owned()].into(),
            )]
            .into(),
        );
        assert_eq!(
            to_written_form(listed).set("firewall-allow-v6"),
            ["fd00::1 . udp . 53 . fd00::2/128".to_owned()].into()
        );
        assert_eq!(
            normalize("192.0.2.7 . 132 . 80 : 10.96.0.7 . 80"),
            "192.0.2.7 . sctp . 80 : 10.96.0.7 . 80"
        );
        assert_eq!(normalize("10.0.0.0/8"), "10.0.0.0/8");
    }

    #[test]
    fn differences_name_changed_chains_missing_and_extra_elements_but_not_unsettled_ones() {
        let listing = parse(LISTED);
        let rules = listing.rules.clone();
        let mut expected = listing.elements.clone();
        // The host prefix the table was written with reads back as a bare address.
        expected.0.insert(
            "firewall-allow-v4".into(),
            ["192.0.2.10 . tcp . 80 . 203.0.113.7/32".to_owned()].into(),
        );
        let none = SetContents::default();
        let listed = to_written_form(listing.elements.clone());
        assert_eq!(
            element_differences(&listed, &expected, &none, &BTreeSet::new()),
            Vec::<String>::new()
        );
        assert_eq!(
            rule_differences(&listing.rules, &rules),
            Vec::<String>::new()
        );

        let mut want = expected.clone();
        want.0
            .get_mut("cluster-ips-v4")
            .unwrap()
            .remove("10.96.0.1 . tcp . 443");
        want.0
            .get_mut("cluster-ips-v4")
            .unwrap()
            .insert("10.96.0.2 . tcp . 80".into());
        let mut fewer_rules = rules.clone();
        fewer_rules.insert("filter-input".into(), 3);
        assert_eq!(
            rule_differences(&listing.rules, &fewer_rules),
            ["chain filter-input: 2 rules, 3 expected".to_owned()]
        );
        let mut other_chain = rules.clone();
        other_chain.insert("postrouting".into(), 1);
        other_chain.remove("filter-input");
        assert_eq!(
            rule_differences(&listing.rules, &other_chain),
            [
                "chain postrouting: 0 rules, 1 expected".to_owned(),
                "chain filter-input: not ipvsd's".to_owned(),
            ]
        );
        assert_eq!(
            element_differences(&listed, &want, &none, &BTreeSet::new()),
            ["set cluster-ips-v4: 1 missing, 1 extra".to_owned()]
        );
        // The same elements, changed while the listing ran: no difference.
        let unsettled = contents(&[(
            "cluster-ips-v4",
            &["10.96.0.1 . tcp . 443", "10.96.0.2 . tcp . 80"],
        )]);
        assert_eq!(
            element_differences(&listed, &want, &unsettled, &BTreeSet::new()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn sets_whose_digest_agrees_are_not_compared_element_by_element() {
        let listed = to_written_form(parse(LISTED).elements);
        let mut want = listed.clone();
        want.0
            .get_mut("cluster-ips-v4")
            .unwrap()
            .insert("10.96.0.2 . tcp . 80".into());
        // Listed but not expected, and empty: agrees with no digest.
        let mut listing = listed.clone();
        listing
            .0
            .insert("service-addresses-v6".into(), BTreeSet::new());
        let agreeing = take_agreeing(&mut listing, &want.digests());
        assert_eq!(
            agreeing,
            ["firewall-allow-v4", "service-addresses-v6"]
                .map(String::from)
                .into()
        );
        assert_eq!(listing.0.keys().collect::<Vec<_>>(), ["cluster-ips-v4"]);
        assert_eq!(
            element_differences(&listing, &want, &SetContents::default(), &agreeing),
            ["set cluster-ips-v4: 1 missing, 0 extra".to_owned()]
        );
        // The same element order aside, the same digest.
        let mut all = listed.clone();
        assert_eq!(
            take_agreeing(&mut all, &listed.digests()).len(),
            listed.0.len()
        );
        assert!(all.0.is_empty());
    }

    #[test]
    fn checking_a_set_at_a_time_reads_as_the_three_steps_do() {
        let listing = parse(LISTED);
        let written = to_written_form(listing.elements.clone());
        let mut want = written.clone();
        want.0
            .get_mut("cluster-ips-v4")
            .unwrap()
            .insert("10.96.0.2 . tcp . 80".into());
        for expected in [written.digests(), want.digests(), SetDigests::default()] {
            let mut elements = written.clone();
            let agreeing = take_agreeing(&mut elements, &expected);
            assert_eq!(
                check(LISTED, &expected),
                Checked {
                    rules: listing.rules.clone(),
                    elements,
                    agreeing,
                }
            );
        }
    }
}
