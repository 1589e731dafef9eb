//! A planted bug that only coverage and comparison feedback find quickly:
//! `make fuzz-selfcheck` proves the build really is instrumented (a
//! blind random search would not reach the panic in seconds).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() >= 8 && &data[..4] == b"VIRE" && data[4] == b'O' && data[5..8] == *b"!!!" {
        panic!("planted bug reached");
    }
});
