//! [`EngineMessage`]: how a typed message ([`Get`], [`Set`], [`Login`], [`LogoutUser`], …)
//! becomes the engine operation it stands for, for [`SessionEngine::send`].
//!
//! The trait is sealed: the set of messages is this crate's, and the table below maps each
//! one to exactly one engine method, so a message nobody handles cannot compile.

use std::future::Future;

use super::SessionEngine;
use crate::error::Result;
use crate::message::*;

/// A message [`SessionEngine::send`] answers with a `Result<Self::Reply>`. Sealed:
/// implemented by the messages of this crate only.
pub trait EngineMessage: sealed::Dispatch<Self::Reply> + Send + 'static {
    /// What the engine answers.
    type Reply: Send + 'static;
}

pub(crate) mod sealed {
    use super::*;

    /// Runs a message as the engine operation it stands for.
    pub trait Dispatch<R> {
        /// The operation, on `engine`.
        fn dispatch(self, engine: &SessionEngine) -> impl Future<Output = Result<R>> + Send + '_;
    }
}

macro_rules! dispatch {
    ($($msg:ident -> $ret:ty => |$m:ident, $e:ident| $call:expr;)*) => {$(
        impl EngineMessage for $msg {
            type Reply = $ret;
        }

        impl sealed::Dispatch<$ret> for $msg {
            fn dispatch(self, $e: &SessionEngine) -> impl Future<Output = Result<$ret>> + Send + '_ {
                #[allow(unused_variables)]
                let $m = self;
                async move { $call.await }
            }
        }
    )*};
}

dispatch! {
    Create -> SessionInfo => |m, e| e.create_with_id(m.id);
    Get -> Option<Vec<u8>> => |m, e| e.get_raw(&m.id, &m.scope, &m.key);
    Set -> () => |m, e| e.insert_raw(&m.id, &m.scope, &m.key, m.value);
    Remove -> bool => |m, e| e.remove(&m.id, &m.scope, &m.key);
    Clear -> () => |m, e| e.clear(&m.id, m.scope.as_deref());
    Keys -> Vec<String> => |m, e| e.keys(&m.id, &m.scope);
    Update -> Option<Vec<u8>> => |m, e| e.update_raw(&m.id, &m.scope, &m.key, m.f);
    Login -> SessionInfo => |m, e| e.login(&m.id, m.userid);
    Logout -> SessionInfo => |m, e| e.logout(&m.id);
    SetPersistent -> SessionInfo => |m, e| e.set_persistent(&m.id, m.persistent);
    Info -> SessionInfo => |m, e| e.info(&m.id);
    Touch -> SessionInfo => |m, e| e.touch(&m.id);
    Destroy -> bool => |m, e| e.destroy(&m.id);
    LogoutOthers -> usize => |m, e| e.logout_others(&m.id);
    LogoutUser -> usize => |m, e| e.logout_user(m.userid);
    SessionsOf -> Vec<UserSession> => |m, e| e.sessions_of(m.userid);
    Revoke -> bool => |m, e| e.revoke(m.userid, &m.handle);
    Stats -> EngineStats => |m, e| e.stats();
    Sweep -> usize => |m, e| e.sweep();
}
