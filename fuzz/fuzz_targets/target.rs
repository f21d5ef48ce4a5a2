//! Fuzz target `target`: see `qp2p::fuzzing::check_target` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qp2p::fuzzing::check_target(data));
