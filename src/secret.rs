//! Where the id key comes from: `session.secret`, else `$DRACO_SESSION_SECRET`, else a key
//! file in the data directory, generated once. The key's use (tags) is in [`crate::id`].

use std::io::Write;
use std::path::Path;

use rand::Rng as _;

use crate::config::{Config, SECRET_ENV};
use crate::error::{ConfigError, StartError};
use crate::id::Keyring;

impl Keyring {
    /// The keyring for a config: `session.secret`, else `$DRACO_SESSION_SECRET`, else the
    /// key file `<dir>/secret.key`, generated (mode 0600) when missing.
    ///
    /// # Errors
    /// [`StartError::Storage`] when the key file cannot be read or written.
    pub fn load(config: &Config) -> Result<Self, StartError> {
        let previous: Vec<&[u8]> = config.session.previous_secrets.iter().map(|s| s.as_bytes()).collect();
        if let Some(secret) = &config.session.secret {
            return Ok(Self::from_secrets(secret.as_bytes(), &previous));
        }
        if let Ok(secret) = std::env::var(SECRET_ENV)
            && !secret.is_empty()
        {
            if secret.len() < 32 {
                return Err(StartError::Config(ConfigError::Invalid {
                    origin: format!("${}", SECRET_ENV),
                    key: "session.secret",
                    message: "must be at least 32 bytes".into(),
                }));
            }
            return Ok(Self::from_secrets(secret.as_bytes(), &previous));
        }
        let secret = load_or_create_key_file(&config.storage.dir.join("secret.key"))?;
        Ok(Self::from_secrets(&secret, &previous))
    }
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
        crate::snapshot::files::private_dir(dir).map_err(|e| storage(format!("cannot create data directory: {e}")))?;
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
