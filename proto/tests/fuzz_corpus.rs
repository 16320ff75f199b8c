//! Replays the fuzz corpus checked in under `fuzz/`: every seed and every input that once crashed a
//! fuzz target (`fuzz/regressions/TARGET/`) goes through that target's harness, with all its
//! invariants, as `bench/fuzz.sh` would run it, but without libFuzzer.
//!
//! Also checks that `fuzz/seeds/` holds exactly what `fuzz/src/seeds.rs` writes; run with
//! `SLUICE_WRITE_SEEDS=1` to rewrite it after changing the seeds.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod harness;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, by name; none if it does not exist.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn checked_in_seeds_are_what_the_seed_writer_writes() {
    let seeds = harness::seeds::all();
    if std::env::var_os("SLUICE_WRITE_SEEDS").is_some() {
        for (target, _) in harness::TARGETS {
            let dir = fuzz_dir().join("seeds").join(target);
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
        }
        for (target, name, bytes) in &seeds {
            fs::write(fuzz_dir().join("seeds").join(target).join(name), bytes).unwrap();
        }
    }
    for (target, _) in harness::TARGETS {
        let on_disk = files(&fuzz_dir().join("seeds").join(target));
        let written: BTreeMap<String, Vec<u8>> = seeds
            .iter()
            .filter(|(t, _, _)| t == target)
            .map(|(_, name, bytes)| (name.to_string(), bytes.clone()))
            .collect();
        assert!(!written.is_empty(), "no seeds for {target}");
        assert!(
            on_disk == written,
            "fuzz/seeds/{target} is stale: rerun with SLUICE_WRITE_SEEDS=1"
        );
    }
}

#[test]
fn seeds_and_regressions_pass_every_fuzz_invariant() {
    // The seeds as written (the test above checks they are the files libFuzzer reads), so that
    // rewriting the files cannot race with this test.
    let mut replayed = 0;
    for (target, name, bytes) in harness::seeds::all() {
        eprintln!("seeds/{target}/{name}");
        let (_, run) = harness::TARGETS.iter().find(|(t, _)| *t == target).unwrap();
        run(&bytes);
        replayed += 1;
    }
    for (target, run) in harness::TARGETS {
        for (name, bytes) in files(&fuzz_dir().join("regressions").join(target)) {
            eprintln!("regressions/{target}/{name}");
            run(&bytes);
            replayed += 1;
        }
    }
    assert!(replayed >= 20, "only {replayed} inputs replayed");
}
