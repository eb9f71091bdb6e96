//! Where the id key comes from: `$DRACO_SESSION_SECRET`, else `session.secret`, else a key
//! file in the data directory, generated once (or, with nothing to persist, a key in memory
//! only). The key's use (tags) is in [`crate::id`].

use std::io::Write;
use std::path::Path;

use rand::Rng as _;

use crate::config::{Config, SECRET_ENV, StorageBackend};
use crate::error::{ConfigError, StartError};
use crate::id::Keyring;

impl Keyring {
    /// The keyring for a config: `$DRACO_SESSION_SECRET` when set (it wins, so a deployment
    /// can replace a secret a config file carries), else `session.secret`, else the key file
    /// `<dir>/secret.key`, generated (mode 0600) when missing. With `storage.persist` off on
    /// the memory backend, that last one is a random key kept in memory only: no session
    /// outlives the process, so neither need the key, and no file is written.
    ///
    /// # Errors
    /// [`StartError::Config`] naming `$DRACO_SESSION_SECRET` when it is shorter than 32 bytes
    /// or not UTF-8; [`StartError::Storage`] when the key file cannot be read or written.
    pub fn load(config: &Config) -> Result<Self, StartError> {
        let env = match std::env::var(SECRET_ENV) {
            Ok(secret) if !secret.is_empty() => Some(secret),
            Ok(_) | Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => return Err(env_invalid("must be UTF-8")),
        };
        Self::load_with(config, env.as_deref())
    }

    /// [`load`](Self::load) with the environment variable's value given.
    fn load_with(config: &Config, env: Option<&str>) -> Result<Self, StartError> {
        let previous: Vec<&[u8]> = config.session.previous_secrets.iter().map(|s| s.as_bytes()).collect();
        if let Some(secret) = env {
            if secret.len() < 32 {
                return Err(env_invalid("must be at least 32 bytes"));
            }
            if config.session.secret.is_some() {
                log::info!("session id secret: ${SECRET_ENV} overrides session.secret");
            }
            return Ok(Self::from_secrets(secret.as_bytes(), &previous)?);
        }
        if let Some(secret) = &config.session.secret {
            return Ok(Self::from_secrets(secret.as_bytes(), &previous)?);
        }
        let storage = &config.storage;
        if !storage.persist && storage.backend == StorageBackend::Memory {
            log::info!(
                "session id secret: none configured and storage.persist is off, so a random key kept \
                 in memory only (ids end with the process, as sessions do)"
            );
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            return Ok(Self::from_secrets(&key, &previous)?);
        }
        let path = storage.dir.join("secret.key");
        let secret = load_or_create_key_file(&path)?;
        if storage.encrypt && storage.backend == StorageBackend::Memory {
            log::info!(
                "storage.encrypt: session data is sealed under the key file {}, which lives in the data directory \
                 it protects; a copy of the whole directory opens it. Setting ${SECRET_ENV} (or session.secret) keeps \
                 the key apart",
                path.display()
            );
        }
        Ok(Self::from_secrets(&secret, &previous)?)
    }
}

fn env_invalid(message: &str) -> StartError {
    StartError::Config(ConfigError::Invalid {
        origin: format!("${SECRET_ENV}"),
        key: "session.secret",
        message: message.into(),
    })
}

fn load_or_create_key_file(path: &Path) -> Result<Vec<u8>, StartError> {
    let storage = |message: String| StartError::Storage { path: path.to_owned(), message };
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() >= 32 => return Ok(bytes),
        Ok(_) => {
            return Err(storage(
                "key file is shorter than 32 bytes; delete it to generate a new one (this ends every session)".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(storage(format!("cannot read key file: {e}"))),
    }
    if let Some(dir) = path.parent() {
        crate::fsutil::private_dir(dir).map_err(|e| storage(format!("cannot create data directory: {e}")))?;
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| storage(format!("cannot create key file: {e}")))?;
    file.write_all(hex.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| storage(format!("cannot write key file: {e}")))?;
    log::info!("generated a new session id key at {}", path.display());
    Ok(hex.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = "secret from the environment, 32+ bytes";
    const FILE: &str = "secret from the config file, 32+ bytes";

    /// Whether `ring` accepts the ids of a keyring made from `secret` alone.
    fn keyed_by(ring: &Keyring, secret: &str) -> bool {
        ring.verify(&Keyring::from_secrets(secret.as_bytes(), &[]).unwrap().generate())
    }

    #[test]
    fn the_environment_wins_over_the_config_file_which_wins_over_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.storage.dir = dir.path().to_owned();
        c.session.secret = Some(FILE.into());
        let ring = Keyring::load_with(&c, Some(ENV)).unwrap();
        assert!(keyed_by(&ring, ENV) && !keyed_by(&ring, FILE));
        let ring = Keyring::load_with(&c, None).unwrap();
        assert!(keyed_by(&ring, FILE) && !keyed_by(&ring, ENV));
        assert!(!dir.path().join("secret.key").exists(), "a configured secret writes no key file");
        c.session.secret = None;
        let ring = Keyring::load_with(&c, None).unwrap();
        let file = std::fs::read_to_string(dir.path().join("secret.key")).unwrap();
        assert!(keyed_by(&ring, &file));
        let e = Keyring::load_with(&c, Some("short")).unwrap_err().to_string();
        assert!(e.contains(SECRET_ENV) && e.contains("32 bytes"), "{e}");
    }

    #[test]
    fn without_persistence_the_key_lives_in_memory_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.storage.dir = dir.path().join("data");
        c.storage.persist = false;
        let a = Keyring::load_with(&c, None).unwrap();
        let b = Keyring::load_with(&c, None).unwrap();
        assert!(!a.verify(&b.generate()), "a fresh random key each start");
        assert!(!c.storage.dir.exists(), "nothing written");
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        let a = load_or_create_key_file(&path).unwrap();
        let b = load_or_create_key_file(&path).unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
