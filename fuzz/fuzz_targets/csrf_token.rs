#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| draco_session::fuzzing::run("csrf_token", data));
