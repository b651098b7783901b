//! Text in the examples' SVG charts.

/// `s` with the characters XML gives a meaning to in text escaped.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
