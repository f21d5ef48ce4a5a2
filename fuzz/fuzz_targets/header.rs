//! Fuzz target `header`: see `qp2p::fuzzing::check_header` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qp2p::fuzzing::check_header(data));
