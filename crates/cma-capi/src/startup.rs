//! libcma's constructor (`.init_array`): it runs when the library loads,
//! once the environment is complete and before the program's `main`.
//!
//! It installs libcma's panic hook, names this copy of the engine `libcma`
//! in the heap report (the engine writes the report itself at exit when
//! `CMA_OPTIONS` holds `report=FILE`: see the engine's
//! `observe::report_file`; a Rust program on `cma::Cma` writes its own
//! beside it), creates the `loaded=FILE` marker for `cma run`, and starts
//! the purge thread.

use engine::faces::{open_for_pid, Engine, PATH_MAX};

/// The last `loaded=` value in a `CMA_OPTIONS` list, read with the engine's
/// parser (which warns about nothing here: the engine itself reports bad
/// options once, when it initialises).
fn loaded_option(options: &[u8]) -> Option<&[u8]> {
    let mut loaded = None;
    engine::options::parse(options, |item| {
        if let Ok(engine::options::Setting::Loaded(p)) = item {
            loaded = Some(p);
        }
    });
    loaded
}

/// Creates the (empty) file `loaded=` names, with `%p` expanded: the sign
/// for `cma run` that this process ran on cma.
fn mark_loaded(template: &[u8]) {
    if template.is_empty() {
        return;
    }
    let mut path = [0u8; PATH_MAX];
    // Created and closed again (dropped) at once: only its existence counts.
    let _ = open_for_pid(template, &mut path);
}

/// The library's constructor.
extern "C" fn init() {
    crate::util::install_panic_hook();
    engine::faces::set_engine(Engine::Libcma);
    // SAFETY: getenv returns null or a NUL-terminated string of the
    // environment, which no other thread changes during start-up.
    let options = unsafe {
        let p = libc::getenv(c"CMA_OPTIONS".as_ptr());
        (!p.is_null()).then(|| core::ffi::CStr::from_ptr(p).to_bytes())
    };
    if let Some(loaded) = options.and_then(loaded_option) {
        mark_loaded(loaded);
    }
    // Here, not lazily from inside malloc or free: libc calls those while
    // holding locks that pthread_create takes too.
    engine::faces::start_purge_thread();
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;
