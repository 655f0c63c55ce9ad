//! Renders text that came from the network (message bodies, sender ids,
//! server error messages) for a terminal or a log line, so that no byte of
//! it is interpreted: control characters (C0, DEL, C1 — escape sequences
//! start with one), line and paragraph separators and bidirectional
//! overrides are shown as visible `\u{…}` escapes (`\n`, `\r`, `\t` as
//! such). A multi-line body stays on one line and cannot pose as a new
//! message; an escape sequence cannot clear the screen or move the cursor.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as is.
fn hostile(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}')
        // Bidirectional embeddings, overrides and isolates reorder what
        // follows them on screen.
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `s` with every hostile character replaced by a visible escape; borrowed
/// when there is nothing to replace.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hostile) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hostile(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_newlines_become_visible_text() {
        let body = "\u{1b}[2J\u{1b}[H\n[99] bob: I never said this\r\u{9b}31m\u{7}";
        let shown = visible(body);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            shown,
            "\\u{1b}[2J\\u{1b}[H\\n[99] bob: I never said this\\r\\u{9b}31m\\u{7}"
        );
        assert_eq!(shown.lines().count(), 1);
    }

    #[test]
    fn bidi_overrides_and_separators_are_shown() {
        assert_eq!(visible("a\u{202e}b\u{2028}c"), "a\\u{202e}b\\u{2028}c");
    }

    #[test]
    fn plain_text_passes_untouched() {
        let plain = "héllo, wörld — 你好 🙂";
        assert!(matches!(visible(plain), Cow::Borrowed(s) if s == plain));
    }
}
