//! A short smoke of every fuzz target (`stowage::fuzzing`): each over its committed seed
//! corpus, its built-in seeds and a few thousand deterministic mutations; and the list of
//! cargo-fuzz targets in `fuzz/` kept equal to the registry, each with a seed corpus.
//! Long campaigns: `docs/RELIABILITY.md`, "Fuzzing".

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stowage::fuzzing::{self, Target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The committed seeds of a target (`fuzz/corpus/<name>/seed-*`), sorted.
fn committed_seeds(name: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(name);
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("seed-"))
                })
                .collect()
        })
        .unwrap_or_default();
    seeds.sort();
    seeds
}

fn smoke(target: &Target, mutants: u64, budget: Duration) {
    let mut corpus: Vec<Vec<u8>> = committed_seeds(target.name)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    corpus.extend((target.seeds)());
    let started = Instant::now();
    for input in &corpus {
        if let Err(message) = fuzzing::run_caught(target, input) {
            panic!("{}: a seed fails: {message}\ninput: {input:?}", target.name);
        }
    }
    let mut rng = 0x5eed_u64 ^ target.name.len() as u64;
    let mut previous: Option<Vec<u8>> = None;
    for _ in 0..mutants {
        if started.elapsed() > budget {
            break;
        }
        let pick = fuzzing::next_random(&mut rng);
        let base = match &previous {
            Some(p) if pick.is_multiple_of(3) => p.clone(),
            _ => corpus[(pick >> 8) as usize % corpus.len()].clone(),
        };
        let input = fuzzing::mutate(&mut rng, &base, &corpus);
        if let Err(message) = fuzzing::run_caught(target, &input) {
            panic!(
                "{}: {message}\ninput ({} bytes): {}",
                target.name,
                input.len(),
                hex::encode(&input)
            );
        }
        previous = Some(input);
    }
}

#[test]
fn every_decoder_target_survives_its_seeds_and_mutations() {
    for target in fuzzing::targets() {
        if !target.name.starts_with("http_") {
            smoke(target, 3000, Duration::from_secs(2));
        }
    }
}

#[test]
fn every_dialect_target_survives_its_seeds_and_mutations() {
    for target in fuzzing::targets() {
        if target.name.starts_with("http_") {
            smoke(target, 1000, Duration::from_secs(3));
        }
    }
    fuzzing::release();
}

/// The seeds are valid: each decoder's seeds decode (so mutations start deep in the
/// format, not at its first check).
#[test]
fn the_seeds_decode() {
    use stowage::format;
    let seeds = |name: &str| (fuzzing::find(name).unwrap().seeds)();
    for seed in seeds("manifest") {
        format::manifest::BackupManifest::decode(&seed).unwrap();
    }
    for seed in seeds("content") {
        format::content::decode_leaf(&seed).unwrap();
    }
    for seed in seeds("catalog") {
        for line in seed.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            format::catalog::CatalogEntry::decode_line(line).unwrap();
        }
    }
    for seed in seeds("catalog_index") {
        let marks = seed.iter().filter(|&&b| b == b'\n').count() as u64;
        format::catalog_index::decode_marks(&seed, marks, u64::MAX, u64::MAX).unwrap();
    }
    for seed in seeds("keyfile") {
        format::keyfile::KeyFile::decode(&seed).unwrap();
    }
    for seed in seeds("config") {
        format::config::RepoConfig::decode(&seed).unwrap();
    }
    let series = seeds("series");
    for seed in &series[..2] {
        format::series::SeriesRecord::decode(seed).unwrap();
    }
    let packs = seeds("pack");
    for pack in &packs[..2] {
        format::pack::check_header(pack).unwrap();
        let footer = &pack[pack.len() - format::pack::FOOTER_LEN..];
        let range = format::pack::decode_footer(footer, pack.len() as u64).unwrap();
        let trailer = &pack[range.start as usize..range.end as usize];
        format::pack::decode_trailer(trailer, range.start).unwrap();
    }
    for seed in &seeds("blob")[..2] {
        format::blob::parse_header(seed).unwrap();
    }
    for seed in seeds("cron") {
        std::str::from_utf8(&seed)
            .unwrap()
            .parse::<stowage::service::cron::Cron>()
            .unwrap();
    }
    let mut valid_tars = 0;
    for seed in seeds("tar") {
        let mut parser = format::tar::TarCatalogParser::new();
        let mut entries = 0;
        parser.feed(&seed[3..], &mut |_| entries += 1);
        if parser.finish(&mut |_| entries += 1).is_ok() && entries > 0 {
            valid_tars += 1;
        }
    }
    assert_eq!(valid_tars, seeds("tar").len());
}

/// `fuzz/fuzz_targets/`, `fuzz/Cargo.toml`, `fuzz/corpus/` and the registry name the
/// same targets, and every target has committed seeds.
#[test]
fn the_fuzz_targets_match_the_registry_and_have_seeds() {
    let registry: BTreeSet<String> = fuzzing::targets()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    let files: BTreeSet<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        files, registry,
        "fuzz/fuzz_targets/ and stowage::fuzzing differ"
    );
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for name in &registry {
        let source =
            std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs"))).unwrap();
        assert!(
            source.contains(&format!("stowage::fuzzing::run(\"{name}\", data)")),
            "fuzz/fuzz_targets/{name}.rs runs another target"
        );
        assert!(
            manifest.contains(&format!(
                "name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\""
            )),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
        assert!(
            !committed_seeds(name).is_empty(),
            "fuzz/corpus/{name}/ has no seed-* file: run `cargo run --example fuzz -- {name} --write-seeds --runs 0`"
        );
    }
    let corpora: BTreeSet<String> = std::fs::read_dir(fuzz_dir().join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        corpora, registry,
        "fuzz/corpus/ and stowage::fuzzing differ"
    );
}
