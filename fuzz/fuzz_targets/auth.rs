#![no_main]
//! libFuzzer entry point of the `auth` target; see `sluice_fuzz::auth`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::auth::run(data));
