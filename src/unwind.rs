//! Turns a panic inside a storage library into an error. redb asserts on structures it
//! reads from its file, so a damaged database file (truncated, pages overwritten) can
//! panic inside any call, its drop included; the index and the state store must give a
//! clear error that names the way out, never take the process down.
//!
//! [`contain`] runs a closure with a thread-local flag set; the panic hook installed
//! once by [`install_hook`] keeps the message of a panic raised under the flag (instead
//! of printing it) so the error can carry it, and hands every other panic to the
//! previous hook unchanged.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
    static LAST_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs the hook that silences (and records) panics raised inside [`contain`].
fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CONTAINED.with(Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                LAST_MESSAGE.with(|m| *m.borrow_mut() = Some(format!("{payload}{location}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `work`, returning `Err(message)` when it panicked.
pub(crate) fn contain<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    let was = CONTAINED.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(work));
    CONTAINED.with(|c| c.set(was));
    result.map_err(|_| {
        LAST_MESSAGE
            .with(|m| m.borrow_mut().take())
            .unwrap_or_else(|| "panic inside the index store".to_string())
    })
}

/// A value (an open database) whose drop also runs under [`contain`]: redb's drop reads
/// the file again, so a damaged file could panic there too.
pub(crate) struct DropContained<T> {
    value: Option<T>,
    /// What it is, for the warning when its drop panicked.
    label: String,
}

impl<T> DropContained<T> {
    pub(crate) fn new(value: T, label: String) -> DropContained<T> {
        DropContained {
            value: Some(value),
            label,
        }
    }

    pub(crate) fn get(&self) -> &T {
        self.value
            .as_ref()
            .expect("the value is only taken out when dropped")
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.value
            .as_mut()
            .expect("the value is only taken out when dropped")
    }
}

impl<T> Drop for DropContained<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            if let Err(reason) = contain(move || drop(value)) {
                tracing::warn!(what = %self.label, %reason, "closing a damaged database");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_the_flag_is_restored() {
        let error = contain(|| -> u32 { panic!("page {} is bad", 7) }).unwrap_err();
        assert!(error.starts_with("page 7 is bad at "), "{error}");
        assert_eq!(contain(|| 5).unwrap(), 5);
        assert!(!CONTAINED.with(Cell::get));
    }
}
