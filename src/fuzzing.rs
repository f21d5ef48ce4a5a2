//! The properties the fuzzer checks, shared by the `fuzz/` targets and by `cargo test`.
//!
//! Each `check_*` function takes arbitrary bytes, feeds them to one parser of untrusted
//! input, and panics (an `assert!`) when a property that callers rely on does not hold.
//! Returning normally means "fine", whether the input was accepted or refused: refusing
//! garbage is the point, crashing on it is the bug.
//!
//! | function | parser | properties |
//! | --- | --- | --- |
//! | [`check_header`] | [`Header::decode`], and the streaming pair `decode_prefix` + `decode_body` | never panics; what decodes fits the limits, re-encodes to an equal header in the same version (1, or 2 with its algorithm byte), and both decoding paths agree |
//! | [`check_ack`] | [`Ack::decode`] | never panics; an accepted ack is exactly [`ACK_LEN`] bytes and re-encodes to the same bytes |
//! | [`check_sanitize`] | [`store::sanitize`] | the result is relative, every component a plain name (not empty, `.` or `..`, no separator or control character, at most [`MAX_COMPONENT`] bytes), at most [`MAX_DEPTH`] deep, and sanitising it again changes nothing |
//! | [`check_target`] | `Target::from_str`, `Ticket::from_str` | never panics; what parses prints as text that parses back to the same target (ticket) |
//!
//! The seed corpus is in `fuzz/corpus/<target>/`; the unit test below runs every file of
//! it through these functions, so what the fuzzer once found stays fixed.

use std::path::Component;

use crate::net::addr::Target;
use crate::net::framing::{Ack, Header, ACK_LEN, MAX_HEADER_LEN, MAX_NAME_LEN, PREFIX_LEN};
use crate::store::{self, MAX_COMPONENT, MAX_DEPTH};

/// The header decoder: never panics, and what it accepts is bounded and round-trips.
pub fn check_header(data: &[u8]) {
    let whole = Header::decode(data);
    if let Ok(h) = &whole {
        assert!(h.name.len() <= MAX_NAME_LEN, "name longer than the limit");
        let bytes = h.encode();
        assert!(
            bytes.len() <= PREFIX_LEN + MAX_HEADER_LEN,
            "encoding too long"
        );
        assert_eq!(bytes[4], data[4], "re-encoded in another version");
        assert_eq!(
            Header::decode(&bytes).as_ref(),
            Ok(h),
            "re-encoded header decodes differently"
        );
    }
    // The streaming path (`read_header`): the prefix first, then exactly the body it
    // announced. It must agree with the one-shot decoder.
    let Some(prefix) = data.get(..PREFIX_LEN) else {
        return;
    };
    let prefix: &[u8; PREFIX_LEN] = prefix.try_into().expect("slice of PREFIX_LEN bytes");
    match Header::decode_prefix(prefix) {
        Ok((version, kind, len)) => {
            assert!(len <= MAX_HEADER_LEN, "prefix accepted an oversized body");
            if let Some(body) = data.get(PREFIX_LEN..PREFIX_LEN + len) {
                assert_eq!(
                    Header::decode_body(version, kind, body),
                    whole,
                    "streaming and one-shot decoding disagree"
                );
            }
        }
        Err(e) => assert_eq!(whole, Err(e), "prefix refused what decode accepted"),
    }
}

/// The ack decoder: never panics; an accepted ack is canonical.
pub fn check_ack(data: &[u8]) {
    if let Ok(ack) = Ack::decode(data) {
        assert_eq!(data.len(), ACK_LEN, "ack of the wrong length accepted");
        assert_eq!(
            &ack.encode()[..],
            data,
            "ack does not re-encode to its bytes"
        );
    }
}

/// The name sanitiser: whatever a sender proposes, the result is a safe relative path.
/// Bytes that are not UTF-8 are replaced (names on the wire are UTF-8 already).
pub fn check_sanitize(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    let Some(path) = store::sanitize(&name) else {
        return;
    };
    assert!(path.is_relative(), "{path:?} is not relative");
    let mut depth = 0;
    for c in path.components() {
        let Component::Normal(part) = c else {
            panic!("{path:?} has a component {c:?}");
        };
        let part = part.to_str().expect("sanitised names are UTF-8");
        depth += 1;
        assert!(!part.is_empty(), "{path:?} has an empty component");
        assert!(
            !part.chars().all(|c| c == '.'),
            "{path:?} has a dots-only component"
        );
        assert!(
            !part.contains(['/', '\\']),
            "{path:?} keeps a path separator"
        );
        assert!(
            !part.chars().any(char::is_control),
            "{path:?} keeps a control character"
        );
        assert!(
            part.len() <= MAX_COMPONENT,
            "{path:?} has a component of {} bytes",
            part.len()
        );
    }
    assert!(depth > 0, "empty path accepted");
    assert!(depth <= MAX_DEPTH, "{path:?} is {depth} deep");
    let text = path.to_str().expect("sanitised names are UTF-8");
    assert_eq!(
        store::sanitize(text).as_ref(),
        Some(&path),
        "sanitising twice changes the name"
    );
}

/// The address and ticket parser: never panics; accepted text round-trips through
/// `Display`.
pub fn check_target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ticket) = text.parse::<crate::net::addr::Ticket>() {
        let shown = ticket.to_string();
        assert_eq!(
            shown.parse::<crate::net::addr::Ticket>().as_ref(),
            Ok(&ticket),
            "ticket {text:?} printed as {shown:?} parses differently"
        );
    }
    let Ok(target) = text.parse::<Target>() else {
        return;
    };
    assert_ne!(target.port, 0, "port 0 accepted in {text:?}");
    let shown = target.to_string();
    assert_eq!(
        shown.parse::<Target>().as_ref(),
        Ok(&target),
        "{text:?} printed as {shown:?} parses differently"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of the committed fuzz corpus (`fuzz/corpus/<target>/`) goes through
    /// the same check as under the fuzzer: inputs that once crashed stay fixed.
    #[test]
    fn fuzz_corpus_regressions() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        type Check = fn(&[u8]);
        let targets: [(&str, Check); 4] = [
            ("header", check_header),
            ("ack", check_ack),
            ("sanitize", check_sanitize),
            ("target", check_target),
        ];
        for (name, check) in targets {
            let dir = root.join(name);
            let mut files = 0;
            for entry in
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{name}: {} fails", path.display());
                files += 1;
            }
            assert!(files > 0, "corpus {} is empty", dir.display());
        }
    }
}
