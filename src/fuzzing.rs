//! Entry points for the fuzz targets in `fuzz/` and for `tests/corpus/fuzz_regressions.rs`, and the
//! one internal type a bench needs (`SessionState`, for benches/snapshot.rs).
//!
//! **Not part of the API**: hidden from the docs, exempt from semver, may change or vanish in
//! any release. Each function feeds outside bytes to one parser exactly as the engine does, and
//! panics only when the parser breaks one of its own invariants (a round trip that does not
//! hold, a value that cannot be in the input); every other outcome, accepted or rejected, is
//! fine. Run them all through [`run`] by target name.

use std::sync::OnceLock;

use actix_web::http::header::{COOKIE, HeaderMap, HeaderValue};

use crate::config::{Config, RobotsConfig};
use crate::id::{ID_LEN, Keyring, SessionId};
use crate::robot::RobotDetector;
use crate::snapshot::format;

/// One session's data and metadata as a shard keeps it (benches/snapshot.rs measures what
/// copying a shard of them would cost).
pub use crate::state::SessionState;

/// The fuzz targets, by name (the directory names under `fuzz/corpus/`).
pub const TARGETS: &[&str] =
    &["session_id", "cookie_header", "user_agent", "snapshot", "log_segment", "config", "csrf_token"];

/// Runs target `name` on `data`.
///
/// # Panics
/// On an unknown target name, and wherever the target itself panics (a bug).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "session_id" => session_id(data),
        "cookie_header" => cookie_header(data),
        "user_agent" => user_agent(data),
        "snapshot" => snapshot(data),
        "log_segment" => log_segment(data),
        "config" => config(data),
        "csrf_token" => csrf_token(data),
        other => panic!("unknown fuzz target {other:?}; known: {TARGETS:?}"),
    }
}

fn keyring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| {
        Keyring::from_secrets(b"fuzzing secret, at least 32 bytes long", &[b"previous fuzzing secret, 32 bytes long"])
            .expect("secrets of 32 bytes or more")
    })
}

/// `SessionId::from_bytes` and `Keyring::parse` (format check, then tag verification).
///
/// Invariants: an id that parses prints back as exactly the input (the text form is canonical);
/// a verified id parses as text too; a forged tag never verifies (the input is not ours).
pub fn session_id(data: &[u8]) {
    let parsed = SessionId::from_bytes(data);
    if let Ok(id) = parsed {
        assert_eq!(data.len(), ID_LEN);
        assert_eq!(id.to_string().as_bytes(), data, "the text form is canonical");
        assert_eq!(std::str::from_utf8(data).ok().and_then(|s| s.parse().ok()), Some(id));
    }
    match keyring().parse(data) {
        Ok(id) => {
            assert_eq!(parsed, Ok(id));
            assert!(keyring().verify(&id));
        }
        Err(e) => assert_eq!(e, crate::SessionError::InvalidId),
    }
    // A fresh id with the input's first bytes swapped in must still round-trip or be rejected.
    let mut text = keyring().generate().to_string().into_bytes();
    let n = data.len().min(ID_LEN);
    text[..n].copy_from_slice(&data[..n]);
    if let Ok(id) = keyring().parse(&text) {
        assert_eq!(id.to_string().as_bytes(), &text[..]);
    }
}

/// The raw `Cookie` header scan (`web::cookie::values`) for the name `sid`.
///
/// The input is split at `\n` into several `Cookie` headers (as HTTP/1 may deliver them);
/// header values that `http` itself refuses are skipped, as they never reach the middleware.
/// Invariants: at most 8 values, each a sub-slice of the input holding no `;`.
pub fn cookie_header(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, value);
        }
    }
    let mut count = 0;
    for value in crate::web::cookie::values(&headers, "sid") {
        count += 1;
        assert!(!value.contains(&b';'), "a value never spans two pairs");
        assert!(value.len() <= data.len());
        // What the middleware does next with each value.
        let _ = keyring().parse(value);
    }
    assert!(count <= 8, "at most 8 candidates are looked at");
}

/// `RobotDetector::is_robot` with the built-in rules, and with configured `extra`/`allow`
/// patterns as well. Invariants: an `allow` match is never a robot; a blank header always is
/// (without `allow`).
pub fn user_agent(data: &[u8]) {
    static DETECTORS: OnceLock<(RobotDetector, RobotDetector)> = OnceLock::new();
    let (builtin, configured) = DETECTORS.get_or_init(|| {
        let builtin = RobotDetector::from_config(&RobotsConfig::default()).expect("built-in rules compile");
        let configured = RobotDetector::from_config(&RobotsConfig {
            detect: true,
            extra: vec!["^acme-probe/".into(), r"internal\s+monitor".into()],
            allow: vec!["OurAppBot/".into()],
        })
        .expect("fuzz patterns compile");
        (builtin, configured)
    });
    let robot = builtin.is_robot(Some(data));
    if data.iter().all(|b| matches!(b, b' ' | b'\t')) {
        assert!(robot, "a blank User-Agent is a robot");
    }
    let with_config = configured.is_robot(Some(data));
    if data.windows(10).any(|w| w.eq_ignore_ascii_case(b"OurAppBot/")) {
        assert!(!with_config, "an allow match always wins");
    }
}

/// Snapshot decoding. The first byte picks the mode:
///
/// - even: the rest is a whole file for `format::decode` (and `Header::parse`);
/// - odd: the rest is a *body*, wrapped in a valid header with matching checksums and the
///   entry count from the first byte, so the record decoder itself is reached (random bytes
///   almost never get past the xxh3 checksums).
///
/// Invariants: no panic, no huge allocation; a decoded file has as many records as its header
/// says, and its records encode back to a body that decodes to the same records.
pub fn snapshot(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let file;
    let bytes = if mode % 2 == 0 {
        let _ = format::Header::parse(rest);
        rest
    } else {
        let chunks = [rest.to_vec()];
        let header = format::header_for(0, 1, 1, 0, u64::from(mode / 2), 0, 0, &chunks);
        file = [&header.to_bytes()[..], rest].concat();
        &file[..]
    };
    let sealer = crate::seal::Sealer::for_tests();
    if let Ok((header, records)) = format::decode(bytes, &sealer) {
        assert_eq!(header.entries, records.len() as u64);
        let mut body = Vec::new();
        for (id, state) in &records {
            format::encode_record(&mut body, id, state).expect("decoded records encode");
        }
        let chunks = [body];
        let again = format::header_for(
            header.shard,
            header.shards,
            header.generation,
            header.written_ms,
            header.entries,
            header.log_from,
            0,
            &chunks,
        );
        let file = [&again.to_bytes()[..], &chunks[0][..]].concat();
        let (_, decoded) = format::decode(&file, &sealer).expect("a re-encoded snapshot decodes");
        assert_eq!(decoded, records, "records survive a re-encode");
    }
}

/// The write-ahead log reader (a segment file: header, framed records).
///
/// `data[0]` picks the mode: even bytes are a whole segment file; odd ones a valid header
/// followed by `data[1..]` as records, with a valid frame put around them so the payload
/// decoder itself is reached.
///
/// Invariants: no panic; every record read encodes again to a record that reads the same.
pub fn log_segment(data: &[u8]) {
    use crate::wal::format as log;
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut file = log::SegmentHeader { shard: 0, shards: 1, base: 0, key_id: 0 }.to_bytes().to_vec();
    let sealer = crate::seal::Sealer::for_tests();
    let bytes = if mode % 2 == 0 {
        rest
    } else {
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX).to_le_bytes();
        file.extend_from_slice(&len);
        #[allow(clippy::cast_possible_truncation, reason = "the frame's low 32 bits")]
        let check = xxhash_rust::xxh3::xxh3_64(&len) as u32;
        file.extend_from_slice(&check.to_le_bytes());
        file.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(rest).to_le_bytes());
        file.extend_from_slice(rest);
        &file[..]
    };
    let (_, entries, _) = log::read_segment(bytes, &sealer);
    for (_, entry) in entries {
        // Plain and sealed, each reads back the same.
        for key_id in [0, sealer.key_id()] {
            let mut again = log::SegmentHeader { shard: 0, shards: 1, base: 0, key_id }.to_bytes().to_vec();
            let sealing = (key_id != 0).then_some(&sealer);
            log::encode_owned(&mut again, &entry, sealing).expect("a decoded record encodes");
            let (_, read, stop) = log::read_segment(&again, &sealer);
            assert_eq!((read.len(), stop), (1, None), "a re-encoded record reads whole");
            assert_eq!(read[0].1, entry, "a record survives a re-encode");
        }
    }
}

/// `Config::from_toml` (TOML, durations, validation, robot pattern compilation).
/// Invariant: an accepted config validates again.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = Config::from_toml(text, "fuzz.toml") {
        config.validate("fuzz.toml").expect("an accepted config stays valid");
    }
}

/// The CSRF token reader (`web::csrf::unmask`), which gets whatever a form or header carried.
///
/// Invariants: a token that unmasks is exactly `TOKEN_LEN` bytes and is the masking of the
/// secret it gave with its own pad (one text form per token); a fresh token with the input's
/// first bytes swapped in unmasks to nothing or, again, to a secret that masks back to it.
pub fn csrf_token(data: &[u8]) {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use crate::web::csrf::{SECRET_LEN, TOKEN_LEN, mask, mask_with, unmask};

    let masks_back = |token: &[u8]| {
        let Some(secret) = unmask(token) else { return };
        assert_eq!(token.len(), TOKEN_LEN);
        let bytes = URL_SAFE_NO_PAD.decode(token).expect("an unmasked token is base64url");
        let pad: [u8; SECRET_LEN] = bytes[..SECRET_LEN].try_into().expect("a token holds a pad");
        assert_eq!(mask_with(&secret, &pad).as_bytes(), token, "a token has one text form");
    };
    masks_back(data);
    let mut token = mask(&[0x5a; SECRET_LEN]).into_bytes();
    let n = data.len().min(TOKEN_LEN);
    token[..n].copy_from_slice(&data[..n]);
    masks_back(&token);
}
