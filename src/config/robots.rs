//! `[robots]`: which User-Agents never get a session, and the check of its patterns.
//!
//! The check compiles the configured patterns: a pattern is valid when the regex crate builds
//! it within the size limits, and nothing short of building it tells. The detector
//! ([`RobotDetector`](crate::RobotDetector)) takes the sets compiled here, so its patterns
//! and this check can never disagree; this module does not depend on the detector.

use regex::bytes::{RegexSet, RegexSetBuilder};
use serde::Deserialize;

use super::Invalid;

/// Most bytes a configured pattern may compile to; past it the pattern is rejected at start-up
/// rather than slowing every request or exhausting memory.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Longest configured pattern, in bytes of source text.
pub(crate) const PATTERN_MAX_LEN: usize = 4096;

/// `[robots]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RobotsConfig {
    /// Refuse sessions to robots at all. Defaults to `true`.
    pub detect: bool,
    /// Extra case-insensitive regular expressions that mark a User-Agent as a robot. Defaults to `[]`.
    pub extra: Vec<String>,
    /// Case-insensitive regular expressions that mark a User-Agent as a person, winning over
    /// every robot pattern. Defaults to `[]`.
    pub allow: Vec<String>,
}

impl Default for RobotsConfig {
    fn default() -> Self {
        Self { detect: true, extra: Vec::new(), allow: Vec::new() }
    }
}

impl RobotsConfig {
    /// `extra` and `allow` compiled (case-insensitive), each `None` when it holds no pattern.
    /// The detector keeps them; the config's check compiles them only to see that they do.
    pub(crate) fn compiled(&self) -> Result<(Option<RegexSet>, Option<RegexSet>), Invalid> {
        Ok((configured(&self.extra, "robots.extra")?, configured(&self.allow, "robots.allow")?))
    }

    pub(super) fn check(&self) -> Result<(), Invalid> {
        self.compiled().map(drop)
    }
}

/// Compiles configured patterns (case-insensitive), one by one first so an error names the
/// culprit; `None` when there are none.
fn configured(patterns: &[String], key: &'static str) -> Result<Option<RegexSet>, Invalid> {
    let bad = |message: String| (key, message);
    for pattern in patterns {
        let shown = quote(pattern);
        if pattern.trim().is_empty() {
            return Err(bad(format!("holds the empty pattern {shown}, which would match every User-Agent")));
        }
        if pattern.len() > PATTERN_MAX_LEN {
            return Err(bad(format!(
                "pattern {shown} is {} bytes long, at most {PATTERN_MAX_LEN}: split or shorten it",
                pattern.len()
            )));
        }
        compile([pattern], PATTERN_SIZE_LIMIT).map_err(|e| {
            bad(match e {
                regex::Error::CompiledTooBig(limit) => format!(
                    "pattern {shown} is too large once compiled (over the {limit}-byte limit): \
                     use fewer or smaller repetitions"
                ),
                e => format!("pattern {shown} is not a valid regular expression: {e}"),
            })
        })?;
    }
    if patterns.is_empty() {
        return Ok(None);
    }
    let limit = PATTERN_SIZE_LIMIT.saturating_mul(patterns.len());
    compile(patterns, limit).map(Some).map_err(|e| bad(format!("patterns are too large together: {e}")))
}

fn compile<I, S>(patterns: I, size_limit: usize) -> Result<RegexSet, regex::Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    RegexSetBuilder::new(patterns).case_insensitive(true).size_limit(size_limit).dfa_size_limit(size_limit).build()
}

/// The pattern as an error shows it: debug-quoted, cut when very long.
fn quote(pattern: &str) -> String {
    const SHOWN: usize = 120;
    if pattern.len() <= SHOWN {
        return format!("{pattern:?}");
    }
    let cut = (0..=SHOWN).rev().find(|&i| pattern.is_char_boundary(i)).unwrap_or(0);
    format!("{:?}… ({} bytes)", &pattern[..cut], pattern.len())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::error::ConfigError;

    #[test]
    fn invalid_robot_patterns_name_key_pattern_and_file() {
        let e = Config::from_toml("[robots]\nextra = [\"ok\", \"(unclosed\"]", "f.toml").unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { key: "robots.extra", .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("f.toml") && e.contains("(unclosed"), "{e}");
        let e = Config::from_toml("[robots]\ndetect = false\nallow = [\"a{2,1}\"]", "f.toml").unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { key: "robots.allow", .. }), "{e:?}");
        assert!(Config::from_toml("[robots]\nextra = [\"^acme/\"]\nallow = [\"friendly\"]", "f.toml").is_ok());
    }
}
