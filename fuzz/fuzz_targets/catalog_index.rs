#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stowage::fuzzing::run("catalog_index", data));
