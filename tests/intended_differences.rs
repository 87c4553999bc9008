//! The kube-proxy comparison's list of intended differences (testbed/intended-differences.yaml)
//! and the README's section "How it differs from kube-proxy's IPVS mode" say the same: every
//! entry is named there by its id, with its `readme` phrase, and the section names no id that
//! the file lacks.

use std::collections::BTreeSet;

use serde::Deserialize;

#[derive(Deserialize)]
struct Entry {
    id: String,
    reason: String,
    readme: String,
    matches: Vec<Vec<String>>,
}

#[derive(Deserialize)]
struct File {
    differences: Vec<Entry>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[test]
fn readme_section_matches_the_intended_differences_file() {
    let file: File = serde_yaml_ng::from_str(&read("testbed/intended-differences.yaml"))
        .expect("testbed/intended-differences.yaml parses");
    let readme = read("README.md");
    let start = readme
        .find("## How it differs from kube-proxy's IPVS mode")
        .expect("the README has the section");
    let rest = &readme[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let marker = "### In the IPVS table";
    let table = &section[section
        .find(marker)
        .expect("the section has a subsection \"In the IPVS table ...\"")..];

    let mut ids = BTreeSet::new();
    for entry in &file.differences {
        assert!(ids.insert(entry.id.clone()), "id {} twice", entry.id);
        assert!(
            !entry.reason.trim().is_empty(),
            "{} has no reason",
            entry.id
        );
        assert!(
            !entry.matches.is_empty() && entry.matches.iter().all(|m| !m.is_empty()),
            "{} has an empty match list",
            entry.id
        );
        assert!(
            table.contains(&format!("`{}`", entry.id)),
            "the README's list of differences does not name `{}`",
            entry.id
        );
        assert!(
            section.contains(&entry.readme),
            "the README's section does not say \"{}\" (entry {})",
            entry.readme,
            entry.id
        );
    }
    // Every id the README's list names (a line starting "- `id`") is in the file.
    for line in table.lines() {
        if let Some(rest) = line.strip_prefix("- `") {
            let id = &rest[..rest.find('`').unwrap()];
            assert!(
                ids.contains(id),
                "the README names `{id}`, which testbed/intended-differences.yaml lacks"
            );
        }
    }
}
