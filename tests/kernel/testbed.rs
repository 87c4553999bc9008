//! Checks of the test bed itself: the kernel has what the other kernel tests need.

use crate::pods::{require_ipvs, run};

#[test]
fn dummy_link_type_and_ipvs_exist() {
    require_ipvs();
    run("ip", &["link", "add", "d0", "type", "dummy"]);
    run("ip", &["link", "del", "d0"]);
    let ipvsadm = std::env::var("IPVSADM").unwrap_or_else(|_| "ipvsadm".to_owned());
    let table = run(&ipvsadm, &["-Ln"]);
    assert!(
        table.starts_with("IP Virtual Server version"),
        "unexpected `ipvsadm -Ln` output: {table}"
    );
}
