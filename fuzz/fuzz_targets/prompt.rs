#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wgsd::fuzz::prompt_syntax(data));
