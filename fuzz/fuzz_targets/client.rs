#![no_main]
//! libFuzzer entry point of the `client` target; see `sluice_fuzz::client`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::client::run(data));
