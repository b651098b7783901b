//! What a job carries from where it was made to where it runs: with the
//! `tracing` feature, the [`tracing::Span`] current where it was spawned
//! (or where the `join`, `scope` or `install` that made it was called),
//! entered for as long as it runs. Without the feature a [`Context`] is
//! empty and entering it does nothing, so the wrapped closures compile to
//! the bare ones.
//!
//! A span is captured by [`tracing::Span::current`] (with no subscriber,
//! a look at the global dispatcher that finds none) and moves with the
//! closure: no allocation of its own.

use std::marker::PhantomData;

/// The context captured where a job is made (module docs).
#[derive(Debug, Clone)]
pub(crate) struct Context {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// The captured context, entered on the thread that runs the job; left
/// when dropped.
pub(crate) struct Entered<'a> {
    #[cfg(feature = "tracing")]
    _span: tracing::span::Entered<'a>,
    _context: PhantomData<&'a Context>,
}

impl Context {
    /// The calling thread's context now.
    #[inline]
    pub(crate) fn capture() -> Self {
        Context {
            #[cfg(feature = "tracing")]
            span: tracing::Span::current(),
        }
    }

    /// Makes this context current on the calling thread until the guard
    /// is dropped.
    #[inline]
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered {
            #[cfg(feature = "tracing")]
            _span: self.span.enter(),
            _context: PhantomData,
        }
    }
}

/// `f`, run inside the context current now.
#[inline]
pub(crate) fn wrap<F, R>(f: F) -> impl FnOnce() -> R
where
    F: FnOnce() -> R,
{
    let context = Context::capture();
    move || {
        let _entered = context.enter();
        f()
    }
}
