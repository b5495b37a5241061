//! PROXY protocol headers: never panics, never claims more bytes than it was given, and every
//! prefix of a parsed header asks for more rather than failing or parsing differently.
#![no_main]

use janus_core::proxy::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((header, len))) = parse(data) {
        assert!(len <= data.len());
        for cut in 0..len {
            assert_eq!(parse(&data[..cut]), Ok(None), "prefix {cut} of {len}");
        }
        assert_eq!(parse(&data[..len]), Ok(Some((header, len))));
    }
});
