//! [`EngineMessage`]: a typed message ([`Get`](crate::message::Get),
//! [`Set`](crate::message::Set), [`Login`](crate::message::Login), …) as
//! [`SessionEngine::send`] runs it.
//!
//! The trait is sealed: the set of messages is this crate's. Every backend operation is one
//! (a blanket implementation over the operations every backend runs, so a message a backend
//! does not handle cannot be sent); [`LogoutOthers`] is the one message made of others.

use std::future::Future;

use super::SessionEngine;
use super::store::BackendOp;
use crate::error::{Result, SessionError};
use crate::message::LogoutOthers;

/// A message [`SessionEngine::send`] answers with a `Result<Self::Reply>`. Sealed:
/// implemented by the messages of this crate only.
pub trait EngineMessage: sealed::Dispatch<Self::Reply> + Send {
    /// What the engine answers.
    type Reply: Send + 'static;
}

pub(crate) mod sealed {
    use super::*;

    /// Runs a message as the engine operation it stands for.
    pub trait Dispatch<R> {
        /// The operation, on `engine`, after verifying the id it names.
        fn dispatch(self, engine: &SessionEngine) -> impl Future<Output = Result<R>> + Send
        where
            Self: Sized;
    }
}

impl<M: BackendOp> EngineMessage for M {
    type Reply = M::Reply;
}

impl<M: BackendOp> sealed::Dispatch<M::Reply> for M {
    async fn dispatch(self, engine: &SessionEngine) -> Result<M::Reply> {
        if let Some(id) = self.session() {
            engine.verify(id)?;
        }
        engine.door().run(self).await
    }
}

impl EngineMessage for LogoutOthers {
    type Reply = usize;
}

impl sealed::Dispatch<usize> for LogoutOthers {
    async fn dispatch(self, engine: &SessionEngine) -> Result<usize> {
        let info = engine.info(&self.id).await?;
        if info.userid == 0 {
            return Err(SessionError::NotLoggedIn);
        }
        engine.door().end_others(info.userid, &engine.handle_of(&self.id), 0).await
    }
}
