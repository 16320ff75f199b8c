//! The bodies of sluice's fuzz targets. Each `run` takes arbitrary bytes, drives one part of
//! `sluice-proto` the way the pooler does, and asserts what must hold whatever the input: nothing
//! panics, caps hold, whatever decodes re-encodes to the same bytes with the crate's own writers,
//! and `postgres-protocol` agrees where it parses the same message.
//!
//! Used by the libFuzzer binaries in `fuzz_targets/` and by `proto/tests/fuzz_corpus.rs`, which
//! replays the checked-in seeds and every crash input under `fuzz/regressions/` in `cargo test`
//! (so it includes this file with `#[path]`: sibling modules are named through `super::`, and only
//! crates `sluice-proto` itself depends on are used).

pub mod auth;
pub mod client;
pub mod frames;
pub mod seeds;
pub mod server;
pub mod startup;

/// A target's body: takes any bytes, panics if an invariant fails.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz_targets/NAME.rs`, `fuzz/seeds/NAME/` and `bench/fuzz.sh NAME`.
pub const TARGETS: &[(&str, Target)] = &[
    ("startup", startup::run),
    ("client", client::run),
    ("server", server::run),
    ("auth", auth::run),
];
