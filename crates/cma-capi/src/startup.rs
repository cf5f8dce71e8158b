//! libcma's constructor (`.init_array`): it runs when the library loads,
//! once the environment is complete and before the program's `main`.
//!
//! It installs libcma's panic hook, names this copy of the engine `libcma`
//! in the heap report (the engine writes the report itself at exit when
//! `CMA_OPTIONS` holds `report=FILE`: see the engine's
//! `observe::report_file`; a Rust program on `cma::Cma` writes its own
//! beside it), creates the `loaded=FILE` marker for `cma run`, leaves out of
//! `CMA_OPTIONS` what the engine has just warned about (see
//! `drop_rejected_options`), starts the purge thread, and installs the
//! fault handler that reports misuse of sampled blocks (when sampling is
//! on; it passes every other fault on to the handler it replaced).

use core::ffi::c_char;

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

/// One warning per process tree: once the engine has warned about the
/// items of `CMA_OPTIONS` it cannot honour (at its initialisation), this
/// process's environment gets `CMA_OPTIONS` without them, the way `cma run` passes options
/// on. The processes it starts inherit the cleaned list, across `fork` and
/// `exec` alike (a shell's `exec` of its last command keeps the pid, so
/// nothing keyed by the parent or the pid could tell), and have nothing
/// left to warn about; every option cma honours still applies in each.
///
/// `setenv` runs here, in a constructor: after libc is initialised (libc is
/// a dependency, so its constructors ran first), before `main` and before
/// the program's threads, so no `getenv` of the program races with it. It
/// allocates, through libcma's own `malloc`, which is ready (the engine
/// initialised above) and is not re-entered: no engine code is running.
/// Nothing is changed when every item is honoured, or when the cleaned
/// list would not fit in `PATH_MAX` bytes (then each process warns, as
/// before). A program that starts children with the environment `main`
/// received as its third argument (the original array) passes the old
/// list on, and its children warn again.
fn drop_rejected_options(options: &[u8]) {
    let mut cleaned = [0u8; PATH_MAX];
    let (mut len, mut fits, mut rejected) = (0, true, false);
    engine::options::sort_items(
        options,
        |item| {
            let comma = usize::from(len > 0);
            match cleaned.get_mut(len..len + comma + item.len()) {
                // One byte stays free for the NUL.
                Some(dst) if len + comma + item.len() < PATH_MAX => {
                    if comma == 1 {
                        dst[0] = b',';
                    }
                    dst[comma..].copy_from_slice(item);
                    len += comma + item.len();
                }
                _ => fits = false,
            }
        },
        |_| rejected = true,
    );
    if !rejected || !fits {
        return;
    }
    // SAFETY: both strings are NUL-terminated (`cleaned` was zeroed and
    // `len < PATH_MAX`); see the function's comment for why setenv is safe
    // here.
    unsafe {
        libc::setenv(
            c"CMA_OPTIONS".as_ptr(),
            cleaned.as_ptr().cast::<c_char>(),
            1,
        );
    }
}

/// The library's constructor.
extern "C" fn init() {
    crate::util::install_panic_hook();
    engine::faces::set_engine(Engine::Libcma);
    // Reads CMA_OPTIONS and warns, if no allocation made it do so yet.
    engine::faces::ensure_init();
    // SAFETY: getenv returns null or a NUL-terminated string of the
    // environment, which no other thread changes during start-up.
    let options = unsafe {
        let p = libc::getenv(c"CMA_OPTIONS".as_ptr());
        (!p.is_null()).then(|| core::ffi::CStr::from_ptr(p).to_bytes())
    };
    if let Some(options) = options {
        if let Some(loaded) = loaded_option(options) {
            mark_loaded(loaded);
        }
        drop_rejected_options(options);
    }
    // Here, not lazily from inside malloc or free: libc calls those while
    // holding locks that pthread_create takes too.
    engine::faces::start_purge_thread();
    engine::faces::install_fault_handler();
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;
