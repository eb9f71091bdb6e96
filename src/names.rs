//! Every scope and key name the crate reserves or checks, and the bounds of what it stores
//! under them: the one place to look before naming a scope.
//!
//! Applications name their own scopes and keys, checked by [`check_name`]; scopes starting with
//! [`RESERVED_SCOPE_PREFIX`] are the crate's own (a `Namespace` of such a name refuses every
//! operation), one per feature that keeps data in the session: the device a session logged in
//! from ([`DEVICE_SCOPE`]), the flash queue ([`FLASH_SCOPE`]), the CSRF secret
//! ([`CSRF_SCOPE`]) and when the user last proved who they are ([`AUTH_SCOPE`]).

use crate::error::SessionError;

/// The default namespace, as in Draco.
pub const DEFAULT_SCOPE: &str = "__system__";
/// Longest scope or key name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Scope names starting with this are kept for the crate's own data (the CSRF secret of
/// [`Session::csrf_token`](crate::Session::csrf_token), the device label, the queue of
/// [`Session::flash`](crate::Session::flash)): a [`Namespace`](crate::Namespace) of such a name
/// fails every operation with [`WebError::ReservedScope`](crate::WebError::ReservedScope) (400),
/// so no application key can collide with them.
pub const RESERVED_SCOPE_PREFIX: &str = "__draco.";

/// The reserved scope holding what a session records about its device (see
/// `Session::devices`): `label`, a short name of the browser and system that logged in.
pub(crate) const DEVICE_SCOPE: &str = "__draco.device";
/// The device label's key in [`DEVICE_SCOPE`].
pub(crate) const LABEL_KEY: &str = "label";
/// The client address's key in [`DEVICE_SCOPE`] (`session.record_ip`).
pub(crate) const IP_KEY: &str = "ip";
/// Longest device label kept, in characters.
pub(crate) const MAX_DEVICE_LABEL: usize = 64;

/// The reserved scope holding the flash queue.
pub(crate) const FLASH_SCOPE: &str = "__draco.flash";
/// The queue's key in [`FLASH_SCOPE`].
pub(crate) const FLASH_KEY: &str = "queue";
/// Most messages queued in one session; a further one drops the oldest.
pub const MAX_FLASHES: usize = 16;
/// Longest text of one message, in bytes (UTF-8); longer text is cut at a character boundary.
pub const MAX_FLASH_TEXT: usize = 1024;

/// The reserved scope holding the CSRF secret.
pub(crate) const CSRF_SCOPE: &str = "__draco.csrf";
/// The secret's key in [`CSRF_SCOPE`].
pub(crate) const CSRF_KEY: &str = "secret";

/// The reserved scope holding the session's last proof of identity (see `Session::auth_age`).
pub(crate) const AUTH_SCOPE: &str = "__draco.auth";
/// The proof's key in [`AUTH_SCOPE`]: one value (user, time, level), so the three change
/// together and take one key of `limits.max_keys`.
pub(crate) const PROOF_KEY: &str = "proof";

/// Checks a scope or key name.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), SessionError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        let mut cut = name.len().min(64);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(SessionError::InvalidName { what, name: name[..cut].to_owned(), max: MAX_NAME_LEN });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("key", "").is_err());
        assert!(check_name("key", &"x".repeat(257)).is_err());
        assert!(check_name("key", "visits").is_ok());
    }

    /// Every scope the crate keeps is reserved, and a valid name; the default one is neither
    /// reserved nor invalid.
    #[test]
    fn the_crate_s_scopes_are_reserved_and_valid() {
        for scope in [DEVICE_SCOPE, FLASH_SCOPE, CSRF_SCOPE, AUTH_SCOPE] {
            assert!(scope.starts_with(RESERVED_SCOPE_PREFIX), "{scope}");
            assert!(check_name("scope", scope).is_ok(), "{scope}");
        }
        for key in [LABEL_KEY, IP_KEY, FLASH_KEY, CSRF_KEY, PROOF_KEY] {
            assert!(check_name("key", key).is_ok(), "{key}");
        }
        assert!(!DEFAULT_SCOPE.starts_with(RESERVED_SCOPE_PREFIX));
        assert!(check_name("scope", DEFAULT_SCOPE).is_ok());
    }
}
