#![no_main]
//! libFuzzer entry point of the `startup` target; see `sluice_fuzz::startup`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::startup::run(data));
