//! Where a user is logged in: [`Session::devices`], [`Session::revoke`] and
//! [`Session::logout_others`], and the device label a login records; and
//! [`Session::erase_user`], the end of all of them.
//!
//! The label is a short name of the browser and system ("Firefox 133 on Windows 10", "Safari on
//! iPhone") made from the User-Agent by the `woothee` parser when a session logs in, and kept in
//! the session's reserved scope `__draco.device` (so snapshots, the log and Redis carry it like
//! any value, and older sessions simply have none). Only the label is kept, never the raw header.
//! Labels are made at login, not creation: only logged-in sessions are listed, and the parser
//! (a few microseconds) then stays off the path of every new visitor.

use std::time::SystemTime;

use super::session::Session;
use crate::error::SessionError;
use crate::error::WebError;
use crate::id::SessionHandle;
use crate::message::{EraseUser, Revoke, SessionsOf};
use crate::names::{DEVICE_SCOPE, IP_KEY, LABEL_KEY, MAX_DEVICE_LABEL};

/// One of the current user's sessions, as [`Session::devices`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Device {
    /// Names the session for [`Session::revoke`]; never its id.
    pub handle: SessionHandle,
    /// Browser and system at login; `None` when none was recorded.
    pub label: Option<String>,
    /// The client's address at login, with `session.record_ip` on.
    pub ip: Option<std::net::IpAddr>,
    /// When the session was created.
    pub created: SystemTime,
    /// When it was last used.
    pub last_used: SystemTime,
    /// Remember-me session.
    pub persistent: bool,
    /// The session asking.
    pub current: bool,
}

/// The label of a User-Agent: browser (with its major version) on system, at most 64
/// characters; "Unknown device" when the parser recognises neither.
pub(crate) fn label(user_agent: &str) -> String {
    let known = |s: &str| !s.is_empty() && s != "UNKNOWN";
    let parsed = woothee::parser::Parser::new().parse(user_agent);
    let (name, version, os) = match &parsed {
        Some(r) => (r.name, r.version, r.os),
        None => ("", "", ""),
    };
    let major = version.split('.').next().filter(|v| known(v) && v.bytes().all(|b| b.is_ascii_digit()));
    let browser = match (known(name), major) {
        (true, Some(major)) => format!("{name} {major}"),
        (true, None) => name.to_owned(),
        (false, _) => String::new(),
    };
    let text = match (browser.is_empty(), known(os)) {
        (false, true) => format!("{browser} on {os}"),
        (false, false) => browser,
        (true, true) => format!("Browser on {os}"),
        (true, false) => "Unknown device".to_owned(),
    };
    text.chars().filter(|c| !c.is_control()).take(MAX_DEVICE_LABEL).collect()
}

impl Session {
    /// Records this request's device label in the session (just before a login).
    pub(super) async fn record_device(&self) -> Result<(), WebError> {
        let label = label(self.user_agent().and_then(|ua| ua.to_str().ok()).unwrap_or(""));
        let id = self.ensure().await?;
        let result = self.engine().door().insert(&id, DEVICE_SCOPE, LABEL_KEY, &label).await;
        self.wrote((id, result))?;
        if self.engine().config().session.record_ip {
            let ip = self.client().to_string();
            let result = self.engine().door().insert(&id, DEVICE_SCOPE, IP_KEY, &ip).await;
            self.wrote((id, result))?;
        }
        Ok(())
    }

    /// The sessions of the logged-in user, most recently used first, this one marked
    /// `current`.
    ///
    /// # Errors
    /// [`WebError::Engine`] with `NotLoggedIn` when nobody is logged in; `Unavailable`.
    pub async fn devices(&self) -> Result<Vec<Device>, WebError> {
        let (userid, current) = self.who().await?;
        let sessions = self.engine().door().run(SessionsOf { userid }).await?;
        Ok(sessions
            .into_iter()
            .map(|s| Device {
                current: s.handle == current,
                handle: s.handle,
                label: s.label,
                ip: s.ip.and_then(|ip| ip.parse().ok()),
                created: s.created,
                last_used: s.last_access,
                persistent: s.persistent,
            })
            .collect())
    }

    /// Ends another session of the logged-in user, named by its handle; whether there was one.
    /// This session's own handle ends nothing (use [`logout`](Self::logout)).
    ///
    /// # Errors
    /// As [`devices`](Self::devices).
    pub async fn revoke(&self, handle: &SessionHandle) -> Result<bool, WebError> {
        let (userid, current) = self.who().await?;
        if *handle == current {
            return Ok(false);
        }
        Ok(self.engine().door().run(Revoke { userid, handle: *handle }).await?)
    }

    /// Ends every other session of the logged-in user ("log out everywhere else"); how many.
    ///
    /// # Errors
    /// As [`devices`](Self::devices).
    pub async fn logout_others(&self) -> Result<usize, WebError> {
        let (userid, current) = self.who().await?;
        Ok(self.engine().door().end_others(userid, &current, 0).await?)
    }

    /// Erases the logged-in user ([`SessionEngine::erase_user`](crate::SessionEngine::erase_user)):
    /// every session of the user ends, this one included (the browser is told to drop the
    /// cookie), and no copy of their sessions' data is left in the backend; how many sessions
    /// ended. A later write in the same request starts a new, anonymous session.
    ///
    /// # Errors
    /// As [`devices`](Self::devices); `Unavailable` (503) when a file could not be rewritten
    /// (the sessions may have ended already: asking again finishes the erasure).
    pub async fn erase_user(&self) -> Result<usize, WebError> {
        let (userid, _) = self.who().await?;
        let ended = self.engine().door().run(EraseUser { userid }).await?;
        self.state().destroyed();
        Ok(ended)
    }

    /// The logged-in user and this session's handle.
    async fn who(&self) -> Result<(u64, SessionHandle), WebError> {
        let userid = self.userid().await?;
        let current = self.state().current().map(|i| self.engine().handle_of(&i.id));
        match current {
            Some(current) if userid != 0 => Ok((userid, current)),
            _ => Err(SessionError::NotLoggedIn.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn labels_name_browser_and_system_and_nothing_else() {
        let firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
        assert_eq!(label(firefox), "Firefox 133 on Windows 10");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert!(label(iphone).starts_with("Safari") && label(iphone).ends_with("on iPhone"), "{}", label(iphone));
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 \
                      Safari/537.36";
        assert_eq!(label(chrome), "Chrome 131 on Linux");
        assert_eq!(label(""), "Unknown device");
        assert_eq!(label("no parser knows this"), "Unknown device");
        let long = format!("{firefox}{}", "x".repeat(10_000));
        assert!(label(&long).chars().count() <= 64);
        assert!(!label("Mozilla/5.0 (\u{1}\u{7f})").chars().any(char::is_control));
    }
}
