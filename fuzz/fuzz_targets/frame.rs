//! Fuzz target `frame`: see `tests/fuzz_harness/mod.rs`, which CI also runs on the corpus.
#![no_main]

#[path = "../../tests/fuzz_harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::frame(data));
