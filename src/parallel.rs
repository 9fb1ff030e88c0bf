//! Work spread over the cores: a few threads, each taking the next index of a list when it is
//! done with the last, so that uneven items (long documents, long batches) still balance.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Calls `task(&mut state, i)` for every `i` in `0..count` on up to `workers` threads (the
/// calling one included); `state` makes each thread's own working state once. When a task
/// returns `false`, no further index is handed out.
pub fn for_each_index<S>(
    count: usize,
    workers: usize,
    state: impl Fn() -> S + Sync,
    task: impl Fn(&mut S, usize) -> bool + Sync,
) {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut own = state();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= count {
                break;
            }
            if !task(&mut own, index) {
                next.store(count, Ordering::Relaxed);
                break;
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..workers.min(count).max(1) {
            scope.spawn(work);
        }
        work();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_index_runs_once_and_a_refusal_stops_the_rest() {
        let seen = Mutex::new(Vec::new());
        for_each_index(
            100,
            3,
            || (),
            |_, i| {
                seen.lock().unwrap().push(i);
                true
            },
        );
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        let ran = AtomicUsize::new(0);
        for_each_index(
            100,
            1,
            || (),
            |_, i| {
                ran.fetch_add(1, Ordering::Relaxed);
                i < 9
            },
        );
        assert_eq!(ran.into_inner(), 10);
    }
}
