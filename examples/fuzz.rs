//! A dependency-free fuzzer for stowage's fuzz targets (`stowage::fuzzing`), on the stable
//! toolchain: deterministic mutations of each target's seed corpus, every panic caught
//! (on any thread), a crashing input saved under `fuzz/artifacts/<target>/`.
//!
//! ```text
//! cargo run --release --example fuzz -- <target|all> [--runs N] [--seed S] [--write-seeds]
//! ```
//!
//! The corpus of a target is `fuzz/corpus/<target>/*` (the built-in seeds when that is
//! empty); `--write-seeds` first writes the built-in seeds there as `seed-NN`. Each run
//! feeds every corpus input, then N mutants (default 100 000); a mutant is made from a
//! corpus input or, one time in three, from the previous mutant. An input still running
//! after 60 s counts as a hang.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stowage::fuzzing::{self, Target};

/// Panics seen since the last check, on any thread: location and message.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The input being run, for the hang watchdog: target, input, when it started.
type Current = Arc<Mutex<Option<(&'static str, Vec<u8>, Instant)>>>;

const HANG: Duration = Duration::from_secs(60);

struct Options {
    which: String,
    runs: u64,
    seed: u64,
    write_seeds: bool,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        which: String::new(),
        runs: 100_000,
        seed: 1,
        write_seeds: false,
    };
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let text = args.next().ok_or(format!("{name} needs a number"))?;
            text.replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: {text:?} is not a number"))
        };
        match arg.as_str() {
            "--runs" => options.runs = number("--runs")?,
            "--seed" => options.seed = number("--seed")?,
            "--write-seeds" => options.write_seeds = true,
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => options.which = other.to_string(),
        }
    }
    if options.which.is_empty() {
        return Err("name a target or `all`".into());
    }
    Ok(options)
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn write_seeds(target: &Target) -> std::io::Result<()> {
    let dir = fuzz_dir().join("corpus").join(target.name);
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let is_seed = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seed-"));
        if is_seed {
            std::fs::remove_file(&path)?;
        }
    }
    for (n, seed) in (target.seeds)().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{n:02}")), seed)?;
    }
    Ok(())
}

/// The target's corpus files, sorted; the built-in seeds when there are none.
fn corpus(target: &Target) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("corpus").join(target.name);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.sort();
    let files: Vec<Vec<u8>> = paths
        .iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    if files.is_empty() {
        (target.seeds)()
    } else {
        files
    }
}

/// Saves a crashing input and says what broke.
fn report(target: &Target, input: &[u8], what: &str) {
    let name = format!("crash-{}", &blake3::hash(input).to_hex()[..16]);
    let dir = fuzz_dir().join("artifacts").join(target.name);
    let path = dir.join(name);
    let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input));
    eprintln!("{}: CRASH: {what}", target.name);
    match saved {
        Ok(()) => eprintln!("  input saved as {}", path.display()),
        Err(error) => eprintln!("  input not saved ({error})"),
    }
    if input.len() <= 4096 {
        eprintln!("  input ({} bytes): {}", input.len(), hex(input));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one input; the panics it caused (its own thread's, or any other thread's).
fn execute(target: &Target, input: &[u8], current: &Current) -> Option<String> {
    if let Ok(mut slot) = current.lock() {
        *slot = Some((target.name, input.to_vec(), Instant::now()));
    }
    let result = fuzzing::run_caught(target, input);
    if let Ok(mut slot) = current.lock() {
        *slot = None;
    }
    let others: Vec<String> = PANICS
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default();
    match (result, others.is_empty()) {
        (Ok(()), true) => None,
        (Err(message), _) if others.is_empty() => Some(message),
        (_, _) => Some(others.join("\n  ")),
    }
}

fn fuzz(target: &Target, options: &Options, current: &Current) -> bool {
    let corpus = corpus(target);
    let started = Instant::now();
    let mut last_report = started;
    for input in &corpus {
        if let Some(what) = execute(target, input, current) {
            report(target, input, &what);
            return false;
        }
    }
    let name_seed = target
        .name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
    let mut rng = options.seed ^ name_seed;
    let mut previous: Option<Vec<u8>> = None;
    for run in 1..=options.runs {
        let pick = fuzzing::next_random(&mut rng);
        let base = match &previous {
            Some(p) if pick.is_multiple_of(3) => p.as_slice(),
            _ => corpus[(pick >> 8) as usize % corpus.len()].as_slice(),
        };
        let input = fuzzing::mutate(&mut rng, base, &corpus);
        if let Some(what) = execute(target, &input, current) {
            report(target, &input, &what);
            return false;
        }
        previous = Some(input);
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!("{}: {run} runs, {:.0}/s", target.name, run as f64 / secs);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let total = options.runs + corpus.len() as u64;
    println!(
        "{}: {total} executions ({} corpus inputs, {} mutants) in {secs:.1} s, {:.0}/s, no crash",
        target.name,
        corpus.len(),
        options.runs,
        total as f64 / secs.max(1e-9)
    );
    true
}

/// Exits the process when an input has run longer than [`HANG`].
fn watchdog(current: Current) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let Ok(slot) = current.lock() else { continue };
        if let Some((name, input, since)) = slot.as_ref() {
            if since.elapsed() > HANG {
                if let Some(target) = fuzzing::find(name) {
                    report(target, input, &format!("still running after {HANG:?}"));
                }
                std::process::exit(2);
            }
        }
    });
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("{error}\nusage: fuzz <target|all> [--runs N] [--seed S] [--write-seeds]");
            let names: Vec<&str> = fuzzing::targets().iter().map(|t| t.name).collect();
            eprintln!("targets: {}", names.join(" "));
            return ExitCode::from(2);
        }
    };
    let chosen: Vec<&Target> = if options.which == "all" {
        fuzzing::targets().iter().collect()
    } else {
        match fuzzing::find(&options.which) {
            Some(target) => vec![target],
            None => {
                eprintln!("no target named {:?}", options.which);
                return ExitCode::from(2);
            }
        }
    };
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let text = format!(
            "panicked at {} (thread {}): {}",
            info.location().map(|l| l.to_string()).unwrap_or_default(),
            thread.name().unwrap_or("unnamed"),
            fuzzing::panic_message(info.payload())
        );
        if let Ok(mut panics) = PANICS.lock() {
            panics.push(text);
        }
    }));
    let current: Current = Arc::new(Mutex::new(None));
    watchdog(current.clone());
    let failed = AtomicBool::new(false);
    for target in chosen {
        if options.write_seeds {
            if let Err(error) = write_seeds(target) {
                eprintln!("{}: writing seeds: {error}", target.name);
                return ExitCode::FAILURE;
            }
        }
        if !fuzz(target, &options, &current) {
            failed.store(true, Ordering::Relaxed);
            break;
        }
    }
    fuzzing::release();
    if failed.load(Ordering::Relaxed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
