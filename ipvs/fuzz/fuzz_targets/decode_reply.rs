//! Arbitrary bytes as a datagram of kernel answers: decoding must return values or errors,
//! never panic. Crashing inputs go to `ipvs/tests/fuzz-regressions/`.
#![no_main]

use ipvs::message::decode_datagram;
use ipvs::Family;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_datagram(data, Family::Inet);
    let _ = decode_datagram(data, Family::Inet6);
});
