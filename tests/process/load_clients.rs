//! The load generators (`examples/load_test.rs`, `examples/soak.rs`) send load to this machine
//! only: `--url` must name a loopback host.

use crate::demo_client::check_loopback;

#[test]
fn only_loopback_targets_are_accepted() {
    assert!(check_loopback("http://127.0.0.1:8080").is_ok());
    assert!(check_loopback("http://localhost:1").is_ok());
    assert!(check_loopback("http://[::1]:80/x").is_ok());
    assert!(check_loopback("http://10.0.0.1:80").is_err());
    assert!(check_loopback("http://[2001:db8::1]:80").is_err());
    assert!(check_loopback("https://127.0.0.1").is_err());
}
