//! Panics in application code (handlers, reactions), caught and told.

use std::any::Any;

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Where the stack of a panic in a handler is kept, from the panic hook to
/// the code that caught it.
mod capture {
    use std::backtrace::Backtrace;
    use std::cell::{Cell, RefCell};
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Once;
    use std::task::{Context, Poll};

    thread_local! {
        /// Set while a handler is polled on this thread.
        static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
        /// The stack of the last panic in a handler on this thread.
        static STACK: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    static HOOK: Once = Once::new();

    /// Installs, once, a panic hook that keeps the stack of a panic in a
    /// handler (and leaves every other panic to the hook before it).
    fn install() {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if IN_HANDLER.with(Cell::get) {
                    let stack = Backtrace::force_capture().to_string();
                    STACK.with(|s| *s.borrow_mut() = Some(stack));
                } else {
                    previous(info);
                }
            }));
        });
    }

    /// A future whose panics keep their stack for [`take_stack`].
    pub(crate) struct Capturing<F: ?Sized>(pub(crate) Pin<Box<F>>);

    impl<F: Future + ?Sized> Future for Capturing<F> {
        type Output = F::Output;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            install();
            let was = IN_HANDLER.with(|flag| flag.replace(true));
            // Reset even when the poll unwinds.
            struct Reset(bool);
            impl Drop for Reset {
                fn drop(&mut self) {
                    IN_HANDLER.with(|flag| flag.set(self.0));
                }
            }
            let _reset = Reset(was);
            self.0.as_mut().poll(cx)
        }
    }

    /// The stack of the last panic caught in a handler on this thread.
    pub(crate) fn take_stack() -> Option<String> {
        STACK.with(|s| s.borrow_mut().take())
    }
}

pub(crate) use capture::{take_stack, Capturing};
