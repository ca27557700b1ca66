//! SIGINT and SIGTERM for every command: temporary files are removed and the program
//! exits with 128 + the signal (130, 143), as shells expect. `train` asks for a
//! graceful stop instead: the first signal ends the run after the current iteration,
//! its checkpoint is written, and then it exits with the same code; a second signal
//! ends it at once.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether the running command stops by itself on the first signal.
static GRACEFUL: AtomicBool = AtomicBool::new(false);

/// Starts the thread that handles SIGINT and SIGTERM. Without it (the registration
/// failed) the default action, ending the process, applies.
pub fn install() {
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let first = RECEIVED
                .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            if first && GRACEFUL.load(Ordering::SeqCst) {
                eprintln!(
                    "\n{}: stopping after this iteration and saving a checkpoint (again to quit now)",
                    name(sig)
                );
                continue;
            }
            if !first && GRACEFUL.load(Ordering::SeqCst) {
                eprintln!("\nsecond signal: exiting without a new checkpoint");
            }
            cnflow::data::remove_temp_files();
            std::process::exit(exit_code(sig));
        }
    });
}

/// The first signal stops the command gracefully (it polls [`received`]) instead of
/// ending the process.
pub fn set_graceful(on: bool) {
    GRACEFUL.store(on, Ordering::SeqCst);
}

/// The first signal received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// 128 + the signal number: 130 for SIGINT, 143 for SIGTERM.
pub fn exit_code(sig: i32) -> i32 {
    128 + sig
}

/// "interrupt" or "SIGTERM".
pub fn name(sig: i32) -> &'static str {
    if sig == SIGINT {
        "interrupt"
    } else {
        "SIGTERM"
    }
}
