//! Repository globs (`owner/name` patterns with `*` and `?`), matched ASCII-case-insensitively
//! within one `/`-separated segment.

/// A case-insensitive `owner/repo` glob where `*` matches any run of characters and `?` one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    lower: Vec<u8>,
}

impl Glob {
    #[must_use]
    pub fn new(pattern: &str) -> Self {
        Self { pattern: pattern.to_owned(), lower: pattern.to_ascii_lowercase().into_bytes() }
    }

    #[must_use]
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Matches `text` (compared ASCII-case-insensitively); linear time, no backtracking
    /// blow-up. `*` and `?` never match a `/`: `octo-org/*` admits the repositories of
    /// `octo-org`, not `octo-org/x/../../other-org`.
    #[must_use]
    pub fn matches(&self, text: &str) -> bool {
        self.matches_lowercase(text.to_ascii_lowercase().as_bytes())
    }

    /// [`Self::matches`] for text already lowercased (ASCII): no allocation.
    #[must_use]
    pub fn matches_lowercase(&self, t: &[u8]) -> bool {
        // Wildcards stay inside a segment, so pattern and text must have as many segments,
        // each matching its counterpart.
        let mut patterns = self.lower.split(|&b| b == b'/');
        let mut texts = t.split(|&b| b == b'/');
        loop {
            match (patterns.next(), texts.next()) {
                (None, None) => return true,
                (Some(p), Some(t)) if matches_segment(p, t) => {}
                _ => return false,
            }
        }
    }
}

/// One `/`-free segment against one pattern segment: `*` any run, `?` one byte.
fn matches_segment(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}
