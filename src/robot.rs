//! Robot detection: which User-Agents never get a session.
//!
//! (Placeholder matcher; the real detector replaces the internals, keeping this API.)

use crate::config::RobotsConfig;
use crate::error::ConfigError;

/// Decides from a User-Agent whether a request comes from a robot.
#[derive(Debug, Clone)]
pub struct RobotDetector {
    detect: bool,
}

impl RobotDetector {
    /// The detector for `[robots]`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming a pattern that does not compile.
    pub fn from_config(config: &RobotsConfig) -> Result<Self, ConfigError> {
        Ok(Self { detect: config.detect })
    }

    /// Whether `user_agent` (the raw header; `None` when missing) is a robot. A missing or
    /// empty User-Agent counts as a robot.
    pub fn is_robot(&self, user_agent: Option<&[u8]>) -> bool {
        if !self.detect {
            return false;
        }
        match user_agent {
            None => true,
            Some(ua) if ua.iter().all(u8::is_ascii_whitespace) => true,
            Some(ua) => {
                let lower = ua.to_ascii_lowercase();
                [&b"bot"[..], b"crawl", b"spider", b"headless"].iter().any(|p| lower.windows(p.len()).any(|w| w == *p))
            }
        }
    }
}
