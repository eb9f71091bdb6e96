//! Robot detection: which User-Agents never get a session.
//!
//! A request without a valid session whose User-Agent is a robot gets no session and no
//! `Set-Cookie` (the request itself is served normally). A User-Agent is a robot when it is
//! missing, empty or blank, or when it matches one of the built-in [`RULES`](rules::RULES) or a configured
//! `robots.extra` pattern — unless a `robots.allow` pattern matches it, which always wins.
//!
//! The built-in rules are generic: the words robots use for themselves (`bot`, `crawl`,
//! `spider`, `fetch`, `preview`, `monitor`, ...), HTTP libraries and scripting runtimes, headless
//! browsers, a contact URL or e-mail address in the string (browsers never carry one), and the
//! bare `Name/1.2` shape that no browser sends. A few rules name what a person's browser may
//! carry that looks like a robot token (the phone maker CUBOT, the CamScanner webview, ...).
//!
//! All rules run at once in one case-insensitive byte automaton (a [`RegexSet`]), so a
//! User-Agent costs one linear scan; non-UTF-8 bytes are simply bytes that match no rule.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::config::{RobotsConfig, named};
use crate::error::ConfigError;
use rules::RULES;

mod rules;

/// Lazy-DFA cache for the built-in rule set, per thread that uses it; filled only as User-Agents
/// need states. All the rules run as one automaton with a few thousand states; under the
/// regex crate's default (2 MiB) the cache thrashes and every scan takes microseconds, not
/// ~100 ns.
const BUILTIN_DFA_CACHE: usize = 8 << 20;

/// Decides from a User-Agent whether a request comes from a robot.
///
/// Cheap to clone: the compiled patterns are shared.
///
/// # Examples
///
/// ```
/// use draco_session::RobotDetector;
/// use draco_session::config::RobotsConfig;
///
/// let robots = RobotDetector::from_config(&RobotsConfig::default()).unwrap();
/// assert!(robots.is_robot(Some(b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")));
/// assert!(robots.is_robot(Some(b"curl/8.5.0")));
/// assert!(robots.is_robot(None));
/// assert!(!robots.is_robot(Some(b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")));
/// ```
#[derive(Debug, Clone)]
pub struct RobotDetector {
    /// `None` when detection is off (`robots.detect = false`).
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// The built-in rules without an exception.
    plain: RegexSet,
    /// The built-in rules with an exception, each with the exception.
    excepted: Vec<(Regex, Regex)>,
    /// Configured `robots.extra` patterns; `None` when there are none.
    extra: Option<RegexSet>,
    /// Configured `robots.allow` patterns; `None` when there are none.
    allow: Option<RegexSet>,
    /// Tells this detector's verdicts apart from other detectors' in [`VERDICTS`].
    serial: u64,
}

impl RobotDetector {
    /// The detector for `[robots]`.
    ///
    /// # Examples
    ///
    /// ```
    /// use draco_session::RobotDetector;
    /// use draco_session::config::RobotsConfig;
    ///
    /// let mut config = RobotsConfig::default();
    /// config.extra = vec!["^acme-probe".into()];
    /// config.allow = vec![r"\bOurAppBot/".into()];
    /// let robots = RobotDetector::from_config(&config).unwrap();
    /// assert!(robots.is_robot(Some(b"ACME-Probe (Windows NT 10.0; Win64; x64)")));
    /// assert!(!robots.is_robot(Some(b"OurAppBot/2.0")));
    ///
    /// let mut bad = RobotsConfig::default();
    /// bad.extra = vec!["(unclosed".into()];
    /// let err = RobotDetector::from_config(&bad).unwrap_err().to_string();
    /// assert!(err.contains("robots.extra") && err.contains("(unclosed"), "{err}");
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `robots.extra` or `robots.allow` and quoting the pattern
    /// that is empty, too long, too large once compiled, or not a valid regular expression.
    pub fn from_config(config: &RobotsConfig) -> Result<Self, ConfigError> {
        Self::build(config, "<config>")
    }

    /// [`from_config`](Self::from_config) with `origin` (the config file) named in errors.
    pub(crate) fn build(config: &RobotsConfig, origin: &str) -> Result<Self, ConfigError> {
        // Configured patterns are checked even when detection is off, so a typo is found before
        // someone turns it on.
        let (extra, allow) = config.compiled().map_err(|invalid| named(invalid, origin))?;
        if !config.detect {
            return Ok(Self { inner: None });
        }
        let plain = builtin_set(RULES.iter().filter(|r| r.unless.is_none()).map(|r| r.robot));
        let excepted = RULES.iter().filter_map(|r| Some((builtin(r.robot), builtin(r.unless?)))).collect();
        static SERIALS: AtomicU64 = AtomicU64::new(0);
        let serial = SERIALS.fetch_add(1, Ordering::Relaxed);
        Ok(Self { inner: Some(Arc::new(Inner { plain, excepted, extra, allow, serial })) })
    }

    /// Whether `user_agent` (the raw header; `None` when missing) is a robot.
    ///
    /// A missing, empty or blank User-Agent is a robot; so is one matching a built-in rule or a
    /// `robots.extra` pattern. A `robots.allow` match is a person whatever else matches. Any
    /// bytes are accepted, UTF-8 or not. Always `false` when `robots.detect` is off.
    pub fn is_robot(&self, user_agent: Option<&[u8]>) -> bool {
        let Some(inner) = &self.inner else { return false };
        let Some(ua) = user_agent else { return true };
        if ua.len() > VERDICT_MAX_UA {
            return inner.judge(ua);
        }
        let key = xxhash_rust::xxh3::xxh3_64_with_seed(ua, inner.serial);
        VERDICTS.with(|verdicts| {
            let mut verdicts = verdicts.borrow_mut();
            if let Some((seen, robot)) = verdicts.get(&key)
                && **seen == *ua
            {
                return *robot;
            }
            let robot = inner.judge(ua);
            if verdicts.len() >= VERDICTS_PER_THREAD {
                verdicts.clear();
            }
            verdicts.insert(key, (ua.into(), robot));
            robot
        })
    }

    /// As [`is_robot`](Self::is_robot), always from the rules (no remembered verdicts): what a
    /// User-Agent never seen before costs. For benches/robot.rs (cargo feature `fuzzing`, not
    /// part of the API) and the tests.
    #[cfg(any(test, feature = "fuzzing"))]
    #[doc(hidden)]
    pub fn is_robot_uncached(&self, user_agent: Option<&[u8]>) -> bool {
        let Some(inner) = &self.inner else { return false };
        user_agent.is_none_or(|ua| inner.judge(ua))
    }
}

thread_local! {
    /// Recent verdicts, per thread: a browser sends the same User-Agent with every request,
    /// and looking it up costs a hash (the full User-Agent is compared too, so a hash
    /// collision is judged afresh) instead of a scan of every rule. Bounded: emptied when
    /// full, so a flood of distinct User-Agents costs [`VERDICTS_PER_THREAD`] entries at most.
    static VERDICTS: RefCell<Verdicts> = RefCell::new(HashMap::new());
}

/// Remembered verdicts: the hash of a User-Agent → the User-Agent and whether it is a robot.
type Verdicts = HashMap<u64, (Box<[u8]>, bool)>;

/// Entries of [`VERDICTS`] per thread.
const VERDICTS_PER_THREAD: usize = 4096;

/// Longer User-Agents are judged every time rather than kept.
const VERDICT_MAX_UA: usize = 512;

impl Inner {
    /// The verdict, from the rules.
    fn judge(&self, ua: &[u8]) -> bool {
        if self.allow.as_ref().is_some_and(|allow| allow.is_match(ua)) {
            return false;
        }
        if ua.iter().all(u8::is_ascii_whitespace) || self.extra.as_ref().is_some_and(|extra| extra.is_match(ua)) {
            return true;
        }
        // One scan for all the rules without exception (a match exits early), then the few rules
        // with one. (`RegexSet::matches` would tell which rules fired in one call, but an
        // overlapping search over every rule is many times slower.)
        self.plain.is_match(ua)
            || self.excepted.iter().any(|(robot, person)| robot.is_match(ua) && !person.is_match(ua))
    }
}

/// Compiles built-in patterns (case-insensitive, ASCII); they are tested, so failing is a bug.
fn builtin_set<'a>(patterns: impl IntoIterator<Item = &'a str>) -> RegexSet {
    RegexSetBuilder::new(patterns)
        .case_insensitive(true)
        .unicode(false)
        .dfa_size_limit(BUILTIN_DFA_CACHE)
        .build()
        .unwrap_or_else(|e| panic!("built-in robot rules must compile: {e}"))
}

/// Compiles one built-in pattern, like [`builtin_set`].
fn builtin(pattern: &str) -> Regex {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .unicode(false)
        .build()
        .unwrap_or_else(|e| panic!("built-in robot rule {pattern:?} must compile: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(extra: &[&str], allow: &[&str]) -> RobotDetector {
        let config = RobotsConfig {
            detect: true,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
        };
        RobotDetector::from_config(&config).unwrap()
    }

    fn robot(ua: &str) -> bool {
        detector(&[], &[]).is_robot(Some(ua.as_bytes()))
    }

    const BROWSERS: &[&str] = &[
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        "Opera/9.80 (Windows NT 6.1; WOW64) Presto/2.12.388 Version/12.18",
        "Mozilla/5.0 (Linux; Android 6.0; CUBOT DINOSAUR Build/MRA58K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/63.0.3239.111 Mobile Safari/537.36",
        // In-app webviews: Facebook, Instagram, Android WebView, an app's Dalvik client.
        "Mozilla/5.0 (iPhone; CPU iPhone OS 11_2_5 like Mac OS X) AppleWebKit/604.5.6 (KHTML, like Gecko) Mobile/15D60 [FBAN/FBIOS;FBAV/159.0.0.48.97;FBCR/Vodafone.de;FBID/phone;FBLC/de_DE]",
        "Mozilla/5.0 (Linux; Android 12; moto g(50) 5G Build/S1RSS32.38-20-9-13; wv) AppleWebKit/537.36 (KHTML,like Gecko) Version/4.0 Chrome/124.0.6367.180 Mobile Safari/537.36 Instagram 333.0.0.42.91 Android (31/12; 280dpi; 720x1462; motorola; moto g(50) 5G; saipan; mt6833; pt_BR; 604247853)",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.123 Mobile Safari/537.36 CamScanner/4.8.5.2310271827",
        "Dalvik/2.1.0 (Linux; U; Android 9; SM-G965U Build/PPR1.180610.011)",
        "MozacFetch/49.0.20200702190156",
        "PS4Application libhttp/1.000 (PS4) CoreMedia libhttp/6.72 (PlayStation 4)",
    ];

    #[test]
    fn browsers_and_webviews_are_people() {
        for ua in BROWSERS {
            assert!(!robot(ua), "{ua}");
        }
    }

    #[test]
    fn missing_empty_and_blank_user_agents_are_robots() {
        let d = detector(&[], &[]);
        assert!(d.is_robot(None));
        assert!(d.is_robot(Some(b"")));
        assert!(d.is_robot(Some(b"  \t ")));
    }

    #[test]
    fn crawlers_libraries_and_headless_browsers_are_robots() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.71 Safari/537.36",
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
            "curl/8.5.0",
            "Wget/1.21.4",
            "python-requests/2.32.3",
            "Go-http-client/1.1",
            "okhttp/4.12.0",
            "Java/17.0.2",
            "libwww-perl/6.72",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            "WhatsApp/2.23.20.0 A",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Chrome-Lighthouse",
        ] {
            assert!(robot(ua), "{ua}");
        }
    }

    #[test]
    fn extra_patterns_mark_robots_case_insensitively() {
        let d = detector(&["^acme-probe/", "internal monitor"], &[]);
        assert!(d.is_robot(Some(b"ACME-Probe/1.0 (Windows NT 10.0)")));
        assert!(d.is_robot(Some(b"Mozilla/5.0 (Internal Monitor; X11)")));
        assert!(!d.is_robot(Some(BROWSERS[0].as_bytes())));
    }

    #[test]
    fn allow_patterns_beat_every_robot_pattern() {
        let d = detector(&["acme"], &["OurAppBot/", "acme-person"]);
        assert!(!d.is_robot(Some(b"Mozilla/5.0 (compatible; OurAppBot/2.0; +https://example.com)")));
        assert!(!d.is_robot(Some(b"ACME-Person/1.0")));
        assert!(d.is_robot(Some(b"ACME-Robot/1.0 (X11)")));
        assert!(d.is_robot(Some(b"Mozilla/5.0 (compatible; Googlebot/2.1)")));
        assert!(d.is_robot(None), "allow cannot match a missing header");
    }

    #[test]
    fn detect_false_makes_everyone_a_person() {
        let config = RobotsConfig { detect: false, extra: vec!["firefox".into()], allow: Vec::new() };
        let d = RobotDetector::from_config(&config).unwrap();
        assert!(!d.is_robot(None));
        assert!(!d.is_robot(Some(b"")));
        assert!(!d.is_robot(Some(b"curl/8.5.0")));
        assert!(!d.is_robot(Some(BROWSERS[1].as_bytes())));
    }

    #[test]
    fn remembered_verdicts_equal_the_rules_and_stay_with_their_detector() {
        let plain = RobotDetector::from_config(&RobotsConfig::default()).unwrap();
        let strict =
            RobotDetector::from_config(&RobotsConfig { extra: vec!["Firefox".into()], ..RobotsConfig::default() })
                .unwrap();
        let firefox: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        for _ in 0..3 {
            // Asked again and again on one thread, each detector keeps its own verdict.
            assert!(!plain.is_robot(Some(firefox)));
            assert!(strict.is_robot(Some(firefox)));
        }
        let long = [b"Mozilla/5.0 ".as_slice(), &[b'x'; 600], b" Googlebot/2.1"].concat();
        for ua in [firefox, b"Googlebot/2.1 (+http://www.google.com/bot.html)", b"", b"  ", &long] {
            for _ in 0..2 {
                assert_eq!(plain.is_robot(Some(ua)), plain.is_robot_uncached(Some(ua)));
            }
        }
        // A flood of distinct User-Agents empties the table instead of growing it.
        for i in 0..(VERDICTS_PER_THREAD * 2) {
            plain.is_robot(Some(format!("Mozilla/5.0 agent {i}").as_bytes()));
        }
        VERDICTS.with(|v| assert!(v.borrow().len() <= VERDICTS_PER_THREAD));
        assert!(!plain.is_robot(Some(firefox)));
    }

    #[test]
    fn non_utf8_bytes_never_panic() {
        let d = detector(&["acme"], &["person"]);
        assert!(d.is_robot(Some(b"\xff\xfe\xfd")));
        assert!(d.is_robot(Some(b"curl/8.5.0 \xc3\x28")));
        assert!(d.is_robot(Some(b"\xff acme \xff")));
        assert!(!d.is_robot(Some(b"Mozilla/5.0 (X11; Linux x86_64; \xe9t\xe9) Gecko/20100101 Firefox/128.0")));
        assert!(!d.is_robot(Some(b"\x80person\x80")));
    }

    #[test]
    fn every_rule_and_exception_compiles() {
        for rule in RULES {
            builtin(rule.robot);
            if let Some(person) = rule.unless {
                builtin(person);
            }
        }
        assert!(RULES.len() < 64, "keep the rule set small enough to read");
    }

    // The config's pattern checks, as the detector reports them.
    fn error(extra: &[&str], allow: &[&str]) -> (String, &'static str, String) {
        let config = RobotsConfig {
            detect: true,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
        };
        match RobotDetector::build(&config, "robots.toml").unwrap_err() {
            ConfigError::Invalid { origin, key, message } => (origin, key, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn invalid_patterns_are_named_with_their_key_and_file() {
        let (origin, key, message) = error(&["ok", "(unclosed"], &[]);
        assert_eq!((origin.as_str(), key), ("robots.toml", "robots.extra"));
        assert!(message.contains("\"(unclosed\"") && message.contains("unclosed group"), "{message}");

        let (_, key, message) = error(&[], &["[z-a]"]);
        assert_eq!(key, "robots.allow");
        assert!(message.contains("\"[z-a]\"") && message.contains("not a valid regular expression"), "{message}");

        let (_, key, message) = error(&[""], &[]);
        assert_eq!(key, "robots.extra");
        assert!(message.contains("empty"), "{message}");

        // The same checks hold when detection is off.
        let config = RobotsConfig { detect: false, extra: Vec::new(), allow: vec!["a{2,1}".into()] };
        assert!(RobotDetector::from_config(&config).is_err());
    }

    #[test]
    fn huge_patterns_are_rejected_clearly() {
        let (_, key, message) = error(&[r"\w{1000}{1000}"], &[]);
        assert_eq!(key, "robots.extra");
        assert!(message.contains("too large once compiled") && message.contains(r"\\w{1000}{1000}"), "{message}");

        let long = "a".repeat(crate::config::PATTERN_MAX_LEN + 1);
        let (_, key, message) = error(&[], &[&long]);
        assert_eq!(key, "robots.allow");
        assert!(message.contains("bytes long") && message.contains("…"), "{message}");
    }
}
