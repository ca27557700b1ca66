//! A fork-join for work that comes back every few microseconds: helper threads that
//! spin between calls instead of sleeping.
//!
//! Rayon's idle workers sleep on a futex soon after their last job, and waking one on
//! this kind of machine costs tens of microseconds: measured here, two 80 µs halves in
//! `rayon::join` from a worker take 117 µs after 10 µs of serial work between calls and
//! 160 µs after 100 µs, where they take 82 µs back to back. A flow-matching iteration is
//! about 100 µs of field evaluation between short serial stretches (the optimizer, the
//! next batch, an assignment), so it would spend most of its second core waiting.
//!
//! [`for_each`] runs tasks `0..n` on the calling thread and on `rayon::current_num_threads() − 1`
//! helpers (counted once, when the helpers start): the caller runs task 0, and every
//! thread claims the next task from one counter. Helpers spin for [`SPIN`] after a call before they park, so a call that
//! follows within that time starts on them at once. Which thread runs a task never
//! changes what it computes: callers write each task's result into its own slot and
//! combine the slots in order.
//!
//! A call blocks until every task has finished. A helper joins a call only while it is
//! open; the caller closes it once no task is left to claim and waits for the helpers
//! that joined, so a helper never touches a finished call's closure. A panic in a task
//! is caught and raised again on the calling thread once the call is closed.

use std::any::Any;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a helper spins after a call before it parks.
pub const SPIN: Duration = Duration::from_millis(2);

/// `state`: the call's number in the high 32 bits, [`CLOSED`], and the helpers inside
/// the call in the low 31 bits.
const CLOSED: u64 = 1 << 31;
const INSIDE: u64 = CLOSED - 1;

/// A call's tasks, with the borrow's lifetime erased while the call is open.
type Job = dyn Fn(usize) + Sync;

struct Shared {
    state: AtomicU64,
    /// Written by the caller only while no helper is inside a call (before it opens
    /// one); read by a helper only after it has joined the open call.
    job: UnsafeCell<Option<(*const Job, usize)>>,
    next: AtomicUsize,
    /// The first panic of a helper's task in the current call.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Helpers parked (or about to park) on `wake`.
    parked: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// Serialises callers: one call is open at a time.
    call: Mutex<()>,
}

// SAFETY: `job` is only accessed under the protocol documented on it; everything else
// is atomics and locks.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer in `job` is only dereferenced under that protocol.
unsafe impl Send for Shared {}

struct Pool {
    shared: &'static Shared,
    helpers: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            state: AtomicU64::new(CLOSED),
            job: UnsafeCell::new(None),
            next: AtomicUsize::new(0),
            panic: Mutex::new(None),
            parked: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            call: Mutex::new(()),
        }));
        let helpers = rayon::current_num_threads().saturating_sub(1);
        for k in 0..helpers {
            let spawned = std::thread::Builder::new()
                .name(format!("cnflow-spin-{k}"))
                .spawn(move || helper(shared));
            if spawned.is_err() {
                // Fewer helpers only means less parallelism: the caller runs what is left.
                return Pool { shared, helpers: k };
            }
        }
        Pool { shared, helpers }
    })
}

/// Helpers (besides the calling thread) that [`for_each`] runs tasks on.
pub fn helpers() -> usize {
    pool().helpers
}

/// Runs `task(k)` for every `k` in `0..n`, on the calling thread and the helpers, and
/// returns when all have finished. With `n ≤ 1`, no helpers, or another call open (a
/// call from inside a task, say) it runs them in order on the calling thread. A panic
/// in a task is raised again here.
pub fn for_each(n: usize, task: &(dyn Fn(usize) + Sync)) {
    call(n, task, false);
}

/// [`for_each`] for work too small to pay for waking a parked helper (tens of
/// microseconds): the tasks run in parallel only if a helper is still spinning after a
/// recent call, and in order on the calling thread otherwise. The tasks must compute
/// the same either way; only the time differs. A step of Adam after a flow-matching
/// iteration (helpers spinning) is shared out; after a likelihood iteration of a few
/// milliseconds, whose rayon work let the helpers park, it is not, so the helpers do not
/// wake to spin beside rayon's workers.
pub fn for_each_if_warm(n: usize, task: &(dyn Fn(usize) + Sync)) {
    call(n, task, true);
}

fn call(n: usize, task: &(dyn Fn(usize) + Sync), warm_only: bool) {
    if n <= 1 || helpers() == 0 {
        (0..n).for_each(task);
        return;
    }
    let s = pool().shared;
    if warm_only && s.parked.load(SeqCst) >= pool().helpers {
        (0..n).for_each(task);
        return;
    }
    // One call at a time: a call from inside a task, or from another thread while one
    // is open, runs its tasks in order on its own thread instead of waiting.
    let _one_call = match s.call.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => {
            (0..n).for_each(task);
            return;
        }
    };
    // SAFETY: the call is closed and no helper is inside (the previous caller waited
    // for that), so no one reads `job`. The lifetime is erased only until this call
    // closes and its helpers have left, which `Close` ensures even if a task panics.
    unsafe {
        let erased: &'static Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Job>(task);
        *s.job.get() = Some((erased as *const Job, n));
    }
    s.next.store(1, SeqCst);
    let epoch = (s.state.load(SeqCst) >> 32) + 1;
    s.state.store(epoch << 32, SeqCst);
    if s.parked.load(SeqCst) > 0 {
        let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.notify_all();
    }
    let close = Close(s);
    // The caller takes task 0 before any helper can claim it, so with as many tasks as
    // threads each task stays on the same thread from call to call (and its buffers in
    // that core's cache); the rest are claimed from the counter, which starts at 1.
    task(0);
    run_tasks(s, task, n);
    drop(close);
    if let Some(p) = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
        std::panic::resume_unwind(p);
    }
}

/// Closes the open call and waits for the helpers inside it (also on unwinding).
struct Close(&'static Shared);

impl Drop for Close {
    fn drop(&mut self) {
        let s = self.0;
        let unwinding = std::thread::panicking();
        if unwinding {
            // A task on the caller panicked: the helpers claim nothing more.
            s.next.store(usize::MAX / 2, SeqCst);
        }
        s.state.fetch_or(CLOSED, SeqCst);
        while s.state.load(SeqCst) & INSIDE != 0 {
            std::hint::spin_loop();
        }
        if unwinding {
            // The caller's own panic is the one raised; a helper's would otherwise be
            // raised by the next, unrelated call.
            s.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        // SAFETY: closed with no helper inside: no one reads `job` until the next call.
        unsafe { *s.job.get() = None };
    }
}

fn run_tasks(s: &Shared, task: &(dyn Fn(usize) + Sync), n: usize) {
    loop {
        let k = s.next.fetch_add(1, SeqCst);
        if k >= n {
            return;
        }
        task(k);
    }
}

fn helper(s: &'static Shared) {
    let mut seen = 0u64;
    loop {
        // Wait for a call newer than the last one seen: spin, then park.
        let started = Instant::now();
        let mut spins = 0u32;
        let state = loop {
            let st = s.state.load(SeqCst);
            if st >> 32 != seen {
                break st;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && started.elapsed() > SPIN {
                let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.parked.fetch_add(1, SeqCst);
                while s.state.load(SeqCst) >> 32 == seen {
                    g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                s.parked.fetch_sub(1, SeqCst);
            }
            std::hint::spin_loop();
        };
        seen = state >> 32;
        if !join(s, seen) {
            continue;
        }
        // SAFETY: joined while open, so the caller has not closed the call and will
        // not clear `job` until this helper leaves.
        if let Some((job, n)) = unsafe { *s.job.get() } {
            // SAFETY: as above: the closure outlives this helper's time inside.
            let task = unsafe { &*job };
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_tasks(s, task, n)));
            if let Err(p) = ran {
                // Claim the rest so the caller does not wait on tasks nobody runs.
                s.next.store(usize::MAX / 2, SeqCst);
                let mut first = s.panic.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(p);
            }
        }
        s.state.fetch_sub(1, SeqCst);
    }
}

/// Enters call `epoch` if it is still open; returns whether this helper is inside.
fn join(s: &Shared, epoch: u64) -> bool {
    let mut st = s.state.load(SeqCst);
    loop {
        if st >> 32 != epoch || st & CLOSED != 0 {
            return false;
        }
        match s.state.compare_exchange_weak(st, st + 1, SeqCst, SeqCst) {
            Ok(_) => return true,
            Err(now) => st = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_per_call() {
        for n in [0, 1, 2, 3, 17, 256] {
            for _ in 0..200 {
                let counts: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                for_each(n, &|k| {
                    counts[k].fetch_add(1, SeqCst);
                });
                assert!(counts.iter().all(|c| c.load(SeqCst) == 1), "n = {n}");
            }
        }
    }

    #[test]
    fn calls_after_the_helpers_parked_still_run() {
        let sum = AtomicUsize::new(0);
        for _ in 0..3 {
            std::thread::sleep(SPIN * 3);
            for_each(8, &|k| {
                sum.fetch_add(k, SeqCst);
            });
        }
        assert_eq!(sum.load(SeqCst), 3 * 28);
    }

    #[test]
    fn a_warm_only_call_runs_every_task_once_whether_or_not_helpers_are_parked() {
        let sum = AtomicUsize::new(0);
        for warm in [false, true] {
            if !warm {
                std::thread::sleep(SPIN * 3);
            }
            for_each_if_warm(8, &|k| {
                sum.fetch_add(k, SeqCst);
            });
            for_each(8, &|k| {
                sum.fetch_add(k, SeqCst);
            });
        }
        assert_eq!(sum.load(SeqCst), 4 * 28);
    }

    #[test]
    fn a_helpers_panic_beside_the_callers_is_not_raised_by_the_next_call() {
        if helpers() == 0 {
            return;
        }
        let hit = std::panic::catch_unwind(|| {
            for_each(2, &|k| {
                if k == 0 {
                    // Task 0 runs on the caller; let the helper panic first.
                    std::thread::sleep(Duration::from_millis(50));
                }
                panic!("task {k}");
            })
        });
        assert!(hit.is_err());
        let after = std::panic::catch_unwind(|| for_each(2, &|_| {}));
        assert!(after.is_ok(), "a panic of the previous call was raised again");
    }

    #[test]
    fn a_call_from_inside_a_task_runs_in_order() {
        let sum = AtomicUsize::new(0);
        for_each(4, &|_| {
            for_each(5, &|k| {
                sum.fetch_add(k, SeqCst);
            });
        });
        assert_eq!(sum.load(SeqCst), 4 * 10);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_pool_goes_on() {
        let hit = std::panic::catch_unwind(|| {
            for_each(64, &|k| {
                if k == 40 {
                    panic!("task 40");
                }
            })
        });
        assert!(hit.is_err());
        let sum = AtomicUsize::new(0);
        for_each(10, &|k| {
            sum.fetch_add(k, SeqCst);
        });
        assert_eq!(sum.load(SeqCst), 45);
    }
}
