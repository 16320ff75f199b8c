#![no_main]
//! libFuzzer entry point of the `server` target; see `sluice_fuzz::server`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::server::run(data));
