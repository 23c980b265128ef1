#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stowage::fuzzing::run("http_tapu", data));
