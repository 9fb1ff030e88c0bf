//! The in-process operator's logs in each test's own captured output: libtest prints them when
//! the test fails (a reconcile that never ended, a call the API server refused) and drops them
//! when it passes. CI shows only a failing test's output: without them, a stuck controller
//! left nothing but the wait's panic.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// Sends this test binary's `tracing` events to the captured output of the test whose thread
/// (or whose runtime's threads) wrote them: twin-operator's at `info`, the rest at `warn`,
/// unless `RUST_LOG` says otherwise.
pub fn capture() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,twin_operator=info"));
        // Another subscriber set first (none is today) keeps its place.
        let _ =
            tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().with_ansi(false).try_init();
    });
}
