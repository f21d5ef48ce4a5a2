//! Fuzz target `ack`: see `qp2p::fuzzing::check_ack` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qp2p::fuzzing::check_ack(data));
