//! Every input the `decode_reply` fuzz target (ipvs/fuzz) ever crashed on, plus hand-made
//! hostile datagrams, decoded again: each must give values or errors, without a panic.

use std::fs;
use std::path::Path;

use ipvs::message::decode_datagram;
use ipvs::Family;

#[test]
fn fuzz_regressions_decode_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut inputs = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for family in [Family::Inet, Family::Inet6] {
            let decoded = decode_datagram(&data, family);
            // Something non-empty always yields at least one result (value or error).
            assert!(
                data.is_empty() || !decoded.is_empty(),
                "{}: nothing decoded",
                path.display()
            );
        }
        inputs += 1;
    }
    assert!(inputs > 0, "no inputs in {}", dir.display());
}
