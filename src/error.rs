//! [`JoinError`]: why a [`Task`](crate::Task) has no output.

use std::any::Any;
use std::fmt;

/// The reason a [`Task`](crate::Task) resolved without a value: its job
/// panicked, or it was cancelled before it started.
///
/// ```
/// let pool = offload::Pool::builder().threads(1).build().unwrap();
/// let err = pool.spawn(|| panic!("boom")).wait().unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.to_string(), "task panicked: boom");
/// let payload = err.into_panic();
/// assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
/// ```
pub struct JoinError {
    repr: Repr,
}

enum Repr {
    Cancelled,
    Panic(SyncPayload),
}

/// A panic payload that may be shared between threads because it is never
/// accessed through a shared reference, except as `&str`/`String`.
struct SyncPayload(Box<dyn Any + Send + 'static>);

// SAFETY: `&SyncPayload` only ever yields `type_id` (no access to the value)
// and `&str`/`&String` views (both `Sync`); every other access takes the
// payload by value (`into_panic`), which needs only `Send`.
unsafe impl Sync for SyncPayload {}

impl SyncPayload {
    fn message(&self) -> Option<&str> {
        let any: &(dyn Any + Send) = &*self.0;
        if let Some(s) = any.downcast_ref::<&'static str>() {
            Some(s)
        } else {
            any.downcast_ref::<String>().map(String::as_str)
        }
    }
}

impl JoinError {
    pub(crate) fn cancelled() -> Self {
        Self {
            repr: Repr::Cancelled,
        }
    }

    pub(crate) fn panic(payload: Box<dyn Any + Send + 'static>) -> Self {
        Self {
            repr: Repr::Panic(SyncPayload(payload)),
        }
    }

    /// Whether the job panicked.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).build().unwrap();
    /// let err = pool.spawn(|| -> u32 { panic!("boom") }).wait().unwrap_err();
    /// assert!(err.is_panic() && !err.is_cancelled());
    /// pool.shutdown();
    /// ```
    #[must_use]
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// Whether the job was cancelled: before it started (its Task was
    /// cancelled or dropped, or the pool was shut down, before a worker
    /// picked it up), or while it ran, when it stopped itself with
    /// [`stop_if_cancelled`](crate::stop_if_cancelled) (which needs
    /// `panic = "unwind"`, the default). A job that checks
    /// [`is_cancelled`](crate::is_cancelled) and returns early resolves to
    /// what it returned instead.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).build().unwrap();
    /// pool.shutdown();
    /// let err = pool.spawn(|| 1).wait().unwrap_err();
    /// assert!(err.is_cancelled() && !err.is_panic());
    /// ```
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// The panic payload, to inspect or to re-raise with
    /// [`std::panic::resume_unwind`].
    ///
    /// # Panics
    /// If the error is a cancellation ([`is_cancelled`](Self::is_cancelled)).
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).build().unwrap();
    /// let err = pool.spawn(|| -> u32 { panic!("boom") }).wait().unwrap_err();
    /// let payload = err.into_panic(); // or std::panic::resume_unwind(payload)
    /// assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
    /// pool.shutdown();
    /// ```
    #[must_use]
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic()
            .unwrap_or_else(|_| panic!("JoinError::into_panic called on a cancelled task"))
    }

    /// The panic payload, or the error back if it is a cancellation.
    ///
    /// ```
    /// let pool = offload::Pool::builder().threads(1).build().unwrap();
    /// pool.shutdown();
    /// let err = pool.spawn(|| 1).wait().unwrap_err();
    /// let err = err.try_into_panic().unwrap_err(); // a cancellation has no payload
    /// assert!(err.is_cancelled());
    /// ```
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panic(payload) => Ok(payload.0),
            Repr::Cancelled => Err(self),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => f.write_str("task was cancelled"),
            Repr::Panic(payload) => match payload.message() {
                Some(message) => write!(f, "task panicked: {message}"),
                None => f.write_str("task panicked"),
            },
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => f.write_str("JoinError::Cancelled"),
            Repr::Panic(payload) => match payload.message() {
                Some(message) => write!(f, "JoinError::Panic({message:?})"),
                None => f.write_str("JoinError::Panic(..)"),
            },
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    /// Lets `?` turn a `JoinError` into an `io::Error` in I/O-shaped code.
    fn from(err: JoinError) -> Self {
        std::io::Error::other(err)
    }
}
