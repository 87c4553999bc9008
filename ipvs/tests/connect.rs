//! Connecting on whatever kernel runs the tests: where IPVS is missing (the development machines:
//! no `/proc/net/ip_vs`), `connect` must say so as `IpvsUnavailable`; where it is present, it must
//! connect.

use std::path::Path;

use ipvs::{Client, Error};

fn assert_shareable<T: Clone + Send + Sync + 'static>() {}

#[test]
fn client_is_shareable_across_tasks() {
    assert_shareable::<Client>();
}

#[tokio::test]
async fn connect_reports_whether_ipvs_is_there() {
    let ipvs_present = Path::new("/proc/net/ip_vs").exists();
    match Client::connect().await {
        Ok(client) => assert!(
            ipvs_present,
            "connected (family {}) although /proc/net/ip_vs is missing",
            client.family_id()
        ),
        Err(Error::IpvsUnavailable) => {
            assert!(!ipvs_present, "IPVS is loaded but the family was not found");
            let message = Error::IpvsUnavailable.to_string();
            assert!(message.contains("ip_vs"), "{message}");
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}
