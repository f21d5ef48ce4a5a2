//! Names from the wire made safe to create: [`sanitize`] and the numbered alternatives
//! to a taken name.
//!
//! A name from the wire is a proposal. What could go wrong with taking it as it is: a
//! sender naming `../../etc/passwd` or `/etc/passwd` (every `.`, `..` and empty
//! component is dropped and both `/` and `\` separate components, so nothing climbs out
//! of the root on any platform), a control character or a right-to-left override that
//! makes a listing lie about what landed (replaced by `_`), a component longer than the
//! filesystem takes (cut to [`MAX_COMPONENT`] bytes, extension kept), a tree deep
//! enough to exhaust the receiver (refused past [`MAX_DEPTH`]). A name with nothing
//! left is refused.
//!
//! On Windows a few more names are not what they seem (`windows_safe`): `CON`, `NUL`,
//! `COM1` and the other device names (with any extension) open a device, a `:` opens
//! an alternate data stream of another file, `<>"|?*` are refused by the filesystem,
//! and a trailing dot or space is silently dropped (so `a.txt.` would land as, and
//! collide with, `a.txt`). There they are replaced by `_`, trimmed, or prefixed with
//! `_`; elsewhere these are ordinary names and are kept.

use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

/// Longest file name component kept, in bytes (leaves room for a `.N` suffix under the
/// usual 255-byte limit).
pub const MAX_COMPONENT: usize = 200;
/// Deepest directory tree accepted.
pub const MAX_DEPTH: usize = 64;

/// Reduces a name from the wire to a safe relative path, or `None` if nothing is left.
pub fn sanitize(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let mut depth = 0;
    for part in name.split(['/', '\\']) {
        if part.is_empty() || part == "." || part == ".." {
            continue;
        }
        let cleaned: String = part
            .chars()
            .map(|c| {
                if c.is_control() || is_bidi_control(c) {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let cleaned = truncate_component(&cleaned);
        #[cfg(windows)]
        let cleaned = windows_safe(cleaned);
        // A component made only of dots is `.` or `..` in disguise after truncation.
        if cleaned.chars().all(|c| c == '.') {
            continue;
        }
        depth += 1;
        if depth > MAX_DEPTH {
            return None;
        }
        out.push(cleaned);
    }
    // Paranoia: what we built must be nothing but normal components.
    let safe = out.components().all(|c| matches!(c, Component::Normal(_)));
    (safe && depth > 0).then_some(out)
}

/// The invisible characters that reorder the text around them (Unicode's bidirectional
/// marks, embeddings, overrides and isolates): a name with U+202E shows
/// `invoice\u{202E}fdp.exe` as `invoiceexe.pdf`, so a listing would lie about what
/// landed.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Cuts a component to [`MAX_COMPONENT`] bytes at a character boundary, keeping a
/// short extension.
fn truncate_component(s: &str) -> String {
    if s.len() <= MAX_COMPONENT {
        return s.to_string();
    }
    let ext = match s.rfind('.') {
        Some(i) if i > 0 && s.len() - i <= 16 => &s[i..],
        _ => "",
    };
    let mut cut = MAX_COMPONENT - ext.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &s[..cut], ext)
}

/// Makes a component (already cleaned and cut) a plain file name on Windows: no
/// character Windows refuses or reads as a stream, no trailing dot or space, not a
/// device name. Applying it twice changes nothing more.
#[cfg(any(windows, test))]
fn windows_safe(component: String) -> String {
    let trim = |s: &str| s.trim_end_matches(['.', ' ']).to_string();
    let replaced: String = component
        .chars()
        .map(|c| if "<>:\"|?*".contains(c) { '_' } else { c })
        .collect();
    let mut out = trim(&replaced);
    if is_windows_device(&out) {
        out.insert(0, '_');
        if out.len() > MAX_COMPONENT {
            out = trim(&truncate_component(&out));
        }
    }
    out
}

/// Whether Windows reads `name` as a device: `CON`, `PRN`, `AUX`, `NUL`, `COM0`–`COM9`,
/// `LPT0`–`LPT9` (also with superscript digits), `CONIN$`, `CONOUT$`, in any case and
/// with any extension.
#[cfg(any(windows, test))]
fn is_windows_device(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("").trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    if matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) {
        return true;
    }
    let mut chars = upper.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let digit = chars.next();
    (prefix == "COM" || prefix == "LPT")
        && chars.next().is_none()
        && matches!(digit, Some('0'..='9' | '¹' | '²' | '³'))
}

/// The `n`th alternative to a taken file name: `name.n.ext`, or `name.n`.
///
/// The name is split at its last dot unless that dot starts it (`.bashrc` has no
/// extension), which is what [`Path::file_stem`] and [`Path::extension`] do on every
/// platform.
pub(super) fn numbered(name: &OsStr, n: u32) -> OsString {
    let path = Path::new(name);
    let (stem, ext) = match (path.file_stem(), path.extension()) {
        (Some(stem), Some(ext)) => (stem, Some(ext)),
        _ => (name, None),
    };
    let mut out = stem.to_os_string();
    out.push(format!(".{n}"));
    if let Some(ext) = ext {
        out.push(".");
        out.push(ext);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> Option<String> {
        sanitize(name).map(|p| p.to_string_lossy().into_owned())
    }

    #[test]
    fn hostile_names_are_reduced_or_refused() {
        assert_eq!(s("../../x").as_deref(), Some("x"));
        assert_eq!(s("/etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(s("a/../../b").as_deref(), Some("a/b"));
        assert_eq!(s("..\\..\\win.ini").as_deref(), Some("win.ini"));
        assert_eq!(s("a\u{1}b\nc").as_deref(), Some("a_b_c"));
        assert_eq!(
            s("invoice\u{202E}fdp.exe").as_deref(),
            Some("invoice_fdp.exe"),
            "a right-to-left override would show this as invoiceexe.pdf"
        );
        assert_eq!(s("a\u{2066}b\u{2069}\u{200F}c").as_deref(), Some("a_b__c"));
        assert_eq!(s("naïve résumé.txt").as_deref(), Some("naïve résumé.txt"));
        assert_eq!(s(".."), None);
        assert_eq!(s(""), None);
        assert_eq!(s("/./../"), None);
        assert_eq!(s(".hidden").as_deref(), Some(".hidden"));
        assert_eq!(s("...").as_deref(), None);
    }

    #[test]
    fn long_components_are_cut_keeping_the_extension() {
        let long = format!("{}.txt", "n".repeat(296));
        let cut = s(&long).unwrap();
        assert_eq!(cut.len(), MAX_COMPONENT);
        assert!(cut.ends_with(".txt"));
        let multibyte = "é".repeat(150);
        let cut = s(&multibyte).unwrap();
        assert!(cut.len() <= MAX_COMPONENT);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn too_deep_trees_are_refused() {
        assert!(sanitize(&"d/".repeat(MAX_DEPTH)).is_some());
        assert!(sanitize(&"d/".repeat(MAX_DEPTH + 1)).is_none());
    }

    /// What Windows would misread: device names, streams, refused characters, trailing
    /// dots and spaces. Only applied on Windows; checked everywhere.
    #[test]
    fn windows_names_are_made_plain() {
        let w = |s: &str| windows_safe(s.to_string());
        assert_eq!(w("CON"), "_CON");
        assert_eq!(w("nul.txt"), "_nul.txt");
        assert_eq!(w("com1.tar.gz"), "_com1.tar.gz");
        assert_eq!(w("LPT9"), "_LPT9");
        assert_eq!(w("com²"), "_com²");
        assert_eq!(w("aux ."), "_aux");
        assert_eq!(w("console"), "console");
        assert_eq!(w("com10"), "com10");
        assert_eq!(w("report.txt:secret"), "report.txt_secret");
        assert_eq!(w("a<b>c\"d|e?f*"), "a_b_c_d_e_f_");
        assert_eq!(w("a.txt. . "), "a.txt");
        assert_eq!(w("..."), "");
        let long = format!("con.{}", "x".repeat(MAX_COMPONENT - 4));
        assert_eq!(w(&long).len(), MAX_COMPONENT);
        assert!(w(&long).starts_with("_con."));
        for name in ["CON", "a.txt. ", "x:y", "nul.txt", &long] {
            assert_eq!(w(&w(name)), w(name), "{name}");
        }
    }

    #[test]
    fn numbered_names() {
        assert_eq!(numbered(OsStr::new("f.txt"), 1), "f.1.txt");
        assert_eq!(numbered(OsStr::new("f"), 2), "f.2");
        assert_eq!(numbered(OsStr::new(".bashrc"), 1), ".bashrc.1");
        assert_eq!(numbered(OsStr::new("a.tar.gz"), 3), "a.tar.3.gz");
        assert_eq!(numbered(OsStr::new("x."), 1), "x.1.");
        assert_eq!(numbered(OsStr::new("..x"), 1), "..1.x");
    }
}
